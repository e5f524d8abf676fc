"""ONNX through jax2onnx (the `jaxdl[onnx]` extra), which converts the serving function's jax primitives to
ONNX operators; the weights are initializers of the graph.

    session = onnxruntime.InferenceSession('model.onnx')
    outputs = session.run(None, {'images': images})   # in metadata.json's order of outputs
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from jaxdl.errors import ConfigError
from jaxdl.export.serving import Serving

FILE = 'model.onnx'


def write(serving: Serving, batch: int | None, output: Path) -> dict:
    from jax2onnx import to_onnx

    names = serving.output_names

    def ordered(images):  # ONNX outputs are positional; metadata.json names them
        outputs = serving(images)
        return tuple(outputs[name] for name in names)

    spec = serving.input_spec(batch)
    try:
        # jax2onnx 0.13's Flax plugins print debugging lines; its failures come as exceptions, handled below
        with contextlib.redirect_stdout(io.StringIO()):
            to_onnx(
                ordered,
                [spec],
                model_name='jaxdl',
                return_mode='file',
                output_path=str(output / FILE),
                input_names=['images'],
                output_names=list(names),
            )
    except NotImplementedError as e:
        raise ConfigError(_unsupported(e)) from e
    return {'file': FILE, 'load': "onnxruntime.InferenceSession(path).run(None, {'images': images})"}


def _unsupported(error: Exception) -> str:
    """One line naming the jax operation the converter has no rule for, and the formats that carry it."""
    found = re.search(r"primitive[^'\"`]*['\"`]([\w.-]+)['\"`]", str(error)) or re.search(r'(\w+)', str(error))
    op = found.group(1) if found else str(error)
    return (
        f'--format onnx: the ONNX converter (jax2onnx) cannot convert the operation {op!r} of this model; '
        f'--format stablehlo or --format savedmodel carry the model as jax lowers it, with no conversion'
    )
