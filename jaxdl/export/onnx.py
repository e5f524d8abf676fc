"""ONNX through jax2onnx (the `jaxdl[onnx]` extra), which converts the serving function's jax primitives to
ONNX operators; the weights are initializers of the graph.

    session = onnxruntime.InferenceSession('model.onnx')
    outputs = session.run(None, {'images': images})   # in metadata.json's order of outputs
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import numpy as np

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
        # Nested jits (jax.nn's own) inlined: the graph is the same, and jax2onnx 0.13's rule for a nested jit
        # predates jax 0.12's core
        with _quiet_converter(), jax.disable_jit():
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


def load(output: Path) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its notes on shapes it merged are not the user's
    session = onnxruntime.InferenceSession(str(output / FILE), options, providers=['CPUExecutionProvider'])
    names = [value.name for value in session.get_outputs()]
    return lambda images: dict(zip(names, session.run(None, {'images': images})))


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """jax2onnx's debugging prints (0.13's Flax plugins), its tracebacks for plugins of libraries jaxdl does not use
    that fail to import, and onnx_ir's serializer notes are not the user's output; failures come as exceptions."""
    loggers = [logging.getLogger(name) for name in ('jax2onnx', 'onnx_ir')]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _unsupported(error: Exception) -> str:
    """One line naming the jax operation the converter has no rule for, and the formats that carry it."""
    found = re.search(r"primitive[^'\"`]*['\"`]([\w.-]+)['\"`]", str(error)) or re.search(r'(\w+)', str(error))
    op = found.group(1) if found else str(error)
    return (
        f'--format onnx: the ONNX converter (jax2onnx) cannot convert the operation {op!r} of this model; '
        f'--format stablehlo or --format savedmodel carry the model as jax lowers it, with no conversion'
    )
