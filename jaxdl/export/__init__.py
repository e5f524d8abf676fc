"""`jaxdl export`: a trained run as a model that runs without jaxdl, in one of three formats, with a
metadata.json beside it. Each format is one module with `write(serving, batch, output) -> dict` (what to load,
and how) and `load(output)` (the written model as its own runtime runs it); the function they all carry is
`serving.serving(run)`, uint8 images in, `jaxdl predict`'s outputs out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from jaxdl.data.model_input import ImageFormat
from jaxdl.errors import ConfigError, InputError, MissingExtra
from jaxdl.export.serving import Serving, serving
from jaxdl.logging import display_path
from jaxdl.runs import load_run


class Format(NamedTuple):
    module: str  # its module, with write(serving, batch, output) and load(output)
    packages: tuple[str, ...] = ()  # what its converter and runtime need beyond jaxdl's own dependencies
    extra: str | None = None  # the jaxdl extra that installs them


FORMATS: dict[str, Format] = {
    'stablehlo': Format('jaxdl.export.stablehlo'),
    'savedmodel': Format('jaxdl.export.savedmodel'),
    'onnx': Format('jaxdl.export.onnx', ('jax2onnx', 'onnx', 'onnxruntime'), 'onnx'),
}


def parse_batch(value: str) -> int | None:
    """--batch: a positive size, or 'dynamic' (None: any batch size)."""
    if value == 'dynamic':
        return None
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 1:
        raise ConfigError(f"--batch takes a positive batch size or 'dynamic', got {value!r}")
    return size


def export(
    workdir: str | Path,
    fmt: str,
    output: str | Path,
    *,
    checkpoint: str | int = 'best',
    weights: str = 'raw',
    batch: int | None = None,
    force: bool = False,
    trust_code: bool = False,
) -> dict:
    """Writes the run's model in `fmt` under the folder `output` and returns the metadata written beside it."""
    if fmt not in FORMATS:
        raise ConfigError(f'--format must be one of {", ".join(FORMATS)}, got {fmt!r}')
    output = Path(output)
    if output.exists() and not force:
        raise InputError(f'{display_path(output)} exists; choose another --output or pass --force to replace it')
    spec = FORMATS[fmt]
    missing = [p for p in spec.packages if importlib.util.find_spec(p) is None]
    if missing:
        raise MissingExtra(f"--format {fmt} needs {', '.join(missing)}: pip install 'jaxdl[{spec.extra}]'")
    writer = importlib.import_module(spec.module)

    run = load_run(workdir, checkpoint, weights=weights, trust_code=trust_code)
    model = serving(run)
    staging = output.with_name(output.name + '.partial')
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        written = writer.write(model, batch, staging)
        _check_runs(writer.load(staging), model, batch)
        metadata = _metadata(run, fmt, model, batch, written, checkpoint=checkpoint, weights=weights)
        (staging / 'metadata.json').write_text(json.dumps(metadata, indent=2) + '\n')
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if output.exists():
        shutil.rmtree(output) if output.is_dir() else output.unlink()
    staging.rename(output)  # a reader never sees half an export
    return metadata


def _check_runs(load: Callable[[np.ndarray], dict[str, np.ndarray]], model: Serving, batch: int | None) -> None:
    """The written model, run once by its own runtime, gives the outputs of the serving function's names, shapes
    and dtypes: what its runtime cannot run is never handed off."""
    images = np.zeros((batch or 2, *model.image_shape), np.uint8)
    signature = lambda outputs: {name: (tuple(value.shape), np.dtype(value.dtype)) for name, value in outputs.items()}
    shapes = signature(load(images))
    wanted = signature(jax.eval_shape(model, jax.ShapeDtypeStruct(images.shape, images.dtype)))
    if shapes != wanted:
        raise RuntimeError(f'the exported model gives {shapes} where its serving function gives {wanted}')


def _metadata(run, fmt: str, model, batch: int | None, written: dict, *, checkpoint, weights: str) -> dict:
    config_json = (Path(run.workdir) / 'config.json').read_bytes()
    height, width, channels = model.image_shape
    return {
        'format': fmt,
        **written,
        'input': {
            'name': 'images',
            'shape': [batch, height, width, channels],  # null: any batch size
            'dtype': 'uint8',
            'layout': 'NHWC',
            # done inside the model, as the run's pipeline does it: centre crop (0: none), resize to size x size
            # (0: none), scale to [0, 1], then (x - mean) / std
            'preprocessing': dataclasses.asdict(ImageFormat.of(run.config.dataset)),
        },
        'outputs': list(model.output_names),
        'task': run.config.task.name,
        'class_names': list(run.class_names),
        'run': {
            'checkpoint_step': run.step,
            'checkpoint': str(checkpoint),
            'weights': weights,
            'config_sha256': hashlib.sha256(config_json).hexdigest(),
            'git_revision': run.environment.get('git_revision'),
        },
        'versions': {'jaxdl': importlib.metadata.version('jaxdl'), 'jax': jax.__version__},
    }
