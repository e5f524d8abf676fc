"""Does the tf.data pipeline keep the train step fed? Its delivery rate against the step's consumption rate.

    python benchmarks/input_pipeline.py                                        # digits_cnn, digits_resnet, shapes_*
    python benchmarks/input_pipeline.py --experiments jaxdl/experiments/shapes_detection.py --steps 60

For each experiment (with its own preprocessing and augmentation):
  - pipeline alone: images per second that `Pipeline.train_batches` delivers once the decoded split is cached
    (the first epoch, which decodes and fills the cache, is excluded);
  - step alone: images per second the jitted train step consumes from batches already in memory (compile
    excluded);
  - fed: the two together as fit() runs them (next batch, dispatch the step), and the share of that loop's wall
    time spent waiting in `next()` for data.
Target: the pipeline delivers at least 3x what the step consumes, and the wait share stays small.
"""
from __future__ import annotations

import argparse
import json
import time

import jax

from jaxdl.config import load_config_file
from jaxdl.data.pipeline import Pipeline
from jaxdl.config import Plan
from jaxdl.train.state import state_from_config
from jaxdl.train.runners import make_runner

EXPERIMENTS = ('jaxdl/experiments/digits_cnn.py', 'jaxdl/experiments/digits_resnet.py', 'jaxdl/experiments/shapes_segmentation.py',
               'jaxdl/experiments/shapes_detection.py')


def measure(experiment: str, steps: int) -> dict:
    config = load_config_file(experiment)
    config.train.parallel = 'jit'
    batch = config.train.batch_size
    pipeline = Pipeline.for_config(config)
    spec = pipeline.spec
    per_epoch = pipeline.steps_per_epoch(batch)
    config.train.duration = '10 epochs'
    task, state, _ = state_from_config(config, num_classes=spec.num_classes, image_shape=spec.image_shape,
                                       class_names=spec.class_names, plan=Plan.resolve(config, per_epoch))
    runner = make_runner('jit', task)

    # Pipeline alone, from the second epoch on (the cache is full).
    stream = pipeline.train_batches(seed=0, global_batch=batch)
    for _ in range(per_epoch):
        next(stream)
    start = time.perf_counter()
    for _ in range(steps):
        next(stream)
    pipeline_rate = steps * batch / (time.perf_counter() - start)

    # Step alone, on one batch in memory.
    device_state = runner.place_state(state)
    fixed = next(stream)
    device_state, sums = runner.train(device_state, fixed)
    jax.block_until_ready(sums)
    start = time.perf_counter()
    for _ in range(steps):
        device_state, sums = runner.train(device_state, fixed)
    jax.block_until_ready(sums)
    step_rate = steps * batch / (time.perf_counter() - start)

    # Both, as fit() runs them.
    waiting = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        asked = time.perf_counter()
        batch_now = next(stream)
        waiting += time.perf_counter() - asked
        device_state, sums = runner.train(device_state, batch_now)
    jax.block_until_ready(sums)
    total = time.perf_counter() - start
    return {'experiment': experiment, 'batch': batch, 'augmentation': dict(config.dataset.augment),
            'pipeline_images_per_s': round(pipeline_rate), 'step_images_per_s': round(step_rate),
            'headroom': round(pipeline_rate / step_rate, 2), 'fed_images_per_s': round(steps * batch / total),
            'waiting_for_data_share': round(waiting / total, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--experiments', nargs='+', default=list(EXPERIMENTS))
    parser.add_argument('--steps', type=int, default=100)
    args = parser.parse_args()
    for experiment in args.experiments:
        print(json.dumps(measure(experiment, args.steps)), flush=True)


if __name__ == '__main__':
    main()
