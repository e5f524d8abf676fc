"""Latency of each exported format against jaxdl's own predict, on the same uint8 batch, side by side in one run.

    python benchmarks/export_latency.py                              # digits_cnn trained 20 steps, batches 1 and 32
    python benchmarks/export_latency.py --experiment jpeg_shapes_resnet --steps 5 --batches 1,16

A run of the experiment is trained for a few steps (what is timed is the forward pass, not its quality), exported
in every format whose runtime is installed (dynamic batch), and each way of predicting is called on the same
batch: `jaxdl predict`'s own path (`runs.predict_images`: TensorFlow preprocessing per image, then the jitted
predict over chunks padded to 256), the pure `predict_step` under jit on the preprocessed batch (no padding), the
StableHLO export through `jax.export` (the preprocessing inside), the SavedModel's `serving_default`, and ONNX
Runtime on the ONNX file. The ways alternate within each round; the median of the rounds is reported, with its
ratio to `jaxdl predict` (below 1: faster). Results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from jaxdl.config import apply_updates, load_config_file
from jaxdl.data.model_input import ImageFormat, model_input
from jaxdl.export import FORMATS, export
from jaxdl.runs import load_run, predict_images
from jaxdl.train.loop import fit
from jaxdl.train.step import predict_step

RUNTIMES = {'savedmodel': ('tensorflow',)}  # beyond what FORMATS names: the GPU machine has no TensorFlow


def ways_to_predict(run, folder: Path) -> dict:
    """name -> function of uint8 images [N, H, W, C] that blocks until its outputs are on the host."""
    image_format = ImageFormat.of(run.config.dataset)
    jitted = jax.jit(lambda state, images: predict_step(state, model_input(images, image_format), task=run.task))
    ways = {
        'jaxdl predict': lambda images: predict_images(run, images),
        'predict_step (jit)': lambda images: jax.tree.map(np.asarray, jitted(run.state, images)),
    }
    for fmt, spec in FORMATS.items():  # each format its runtime is installed for
        if all(importlib.util.find_spec(p) for p in (*spec.packages, *RUNTIMES.get(fmt, ()))):
            export(run.workdir, fmt, folder / fmt)
            ways[fmt] = importlib.import_module(spec.module).load(folder / fmt)
    return ways


def median_latency_ms(ways: dict, images: np.ndarray, rounds: int) -> dict[str, float]:
    for way in ways.values():  # compile and warm up each (a new batch size compiles anew)
        way(images)
        way(images)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            start = time.perf_counter()
            way(images)
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--experiment', default='digits_cnn')
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--batches', default='1,32')
    parser.add_argument('--rounds', type=int, default=30)
    args = parser.parse_args()
    config = apply_updates(
        load_config_file(args.experiment),
        {'train.duration': f'{args.steps} steps', 'train.validate_every': f'{args.steps} steps'},
    )
    with tempfile.TemporaryDirectory() as root:
        run = load_run(fit(config, Path(root) / 'run', show_progress=False).workdir)
        ways = ways_to_predict(run, Path(root))
        rng = np.random.default_rng(0)
        rows = []
        for batch in (int(b) for b in args.batches.split(',')):
            images = rng.integers(0, 256, (batch, *run.image_shape), dtype=np.uint8)
            latency = median_latency_ms(ways, images, args.rounds)
            reference = latency['jaxdl predict']
            for name, ms in latency.items():
                rows.append({'batch': batch, 'way': name, 'ms': round(ms, 3), 'ratio': round(ms / reference, 3)})
    print(f'{args.experiment}, jax {jax.__version__} on {jax.devices()[0].platform}, medians of {args.rounds} rounds')
    print(f'{"batch":>5}  {"way":<20} {"ms":>9}  {"/ jaxdl predict":>15}')
    for row in rows:
        print(f'{row["batch"]:>5}  {row["way"]:<20} {row["ms"]:>9.3f}  {row["ratio"]:>15.3f}')
    print(json.dumps(rows))


if __name__ == '__main__':
    main()
