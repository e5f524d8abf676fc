"""What two pieces of the train step's machinery cost per step, each measured against the step without it, in one
process, alternating, medians:

    python benchmarks/step_costs.py --repeats 5

  - the non-finite guard: `train_step` checks every gradient leaf for NaN/Inf and selects the old state where
    the update is not finite. Against the same step with the per-leaf check replaced by `True` (the loss is
    still checked), jit runner, batches in memory;
  - the pmap runner's metric sums: handed back with out_axes=None (one copy, as shipped) against the earlier
    way, every device's copy handed back and `[0]` sliced out of each leaf on the host. Two fake CPU devices
    (the device count is set before jax is imported), dispatch bounded as fit() bounds it on a CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=2')

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from functools import partial  # noqa: E402

import jaxdl.train.step as step_module  # noqa: E402
from jaxdl.config import apply_updates, default_config  # noqa: E402
from jaxdl.models import build_model  # noqa: E402
from jaxdl.tasks import build_task  # noqa: E402
from jaxdl.train.state import create_train_state  # noqa: E402
from jaxdl.train.runners import PMAP_AXIS, compiler_options, make_runner  # noqa: E402
from jaxdl.train.step import train_step  # noqa: E402
from timing import images_per_s  # noqa: E402  (this script's directory is on sys.path)

BATCH = {'cnn': 128, 'resnet': 64}


def setup(model_name: str):
    config = apply_updates(default_config(), {
        'model.name': model_name,
        'model.options': {'depth': 10, 'width': 16, 'stem': 'small'} if model_name == 'resnet' else {}})
    task = build_task(config.task, 10)
    model = build_model(config.model, 10)
    batch = BATCH[model_name]
    rng = np.random.default_rng(0)
    data = {'image': rng.normal(size=(batch, 8, 8, 1)).astype(np.float32), 'valid': np.ones(batch, bool),
            'label': rng.integers(0, 10, batch).astype(np.int32)}
    fresh = lambda: create_train_state(model, optax.sgd(0.01, 0.9), seed=0, image_shape=(8, 8, 1))
    return task, data, fresh, batch


def guard_cost(model_name: str, repeats: int) -> dict:
    task, data, fresh, batch = setup(model_name)
    options = compiler_options('eigen')
    guarded = jax.jit(partial(train_step, task=task), donate_argnums=0, compiler_options=options)

    def unguarded_step(state, batch):
        original = step_module._all_finite
        step_module._all_finite = lambda tree: True  # traced once: the jitted program keeps only the loss check
        try:
            return train_step(state, batch, task=task)
        finally:
            step_module._all_finite = original
    unguarded = jax.jit(unguarded_step, donate_argnums=0, compiler_options=options)
    rates = {'guarded': [], 'unguarded': []}
    for _ in range(repeats):
        rates['guarded'].append(images_per_s(guarded, fresh(), data, batch))
        rates['unguarded'].append(images_per_s(unguarded, fresh(), data, batch))
    return _result(f'non-finite guard, {model_name} batch {batch}', rates, 'guarded', 'unguarded')


def pmap_metrics_cost(model_name: str, repeats: int) -> dict:
    task, data, fresh, batch = setup(model_name)
    n = jax.local_device_count()
    runner = make_runner('pmap', task)  # shipped: out_axes=None for the sums
    old_train = jax.pmap(partial(train_step, task=task, axis_name=PMAP_AXIS), axis_name=PMAP_AXIS,
                         donate_argnums=0)
    split = lambda b: jax.tree.map(lambda x: x.reshape(n, x.shape[0] // n, *x.shape[1:]), b)

    def sliced(state, b):  # the earlier runner: every device's sums back, [0] sliced out of each leaf
        state, metrics = old_train(state, split(b))
        return state, jax.tree.map(lambda x: x[0], metrics)
    rates = {'one copy (out_axes=None)': [], 'sliced per leaf': []}
    for _ in range(repeats):
        rates['one copy (out_axes=None)'].append(
            images_per_s(runner.train, runner.place_state(fresh()), data, batch, runner.max_steps_in_flight))
        rates['sliced per leaf'].append(
            images_per_s(sliced, runner.place_state(fresh()), data, batch, runner.max_steps_in_flight))
    return _result(f'pmap metric sums, {model_name} batch {batch} on {n} CPU devices', rates,
                   'one copy (out_axes=None)', 'sliced per leaf')


def _result(name: str, rates: dict, shipped: str, other: str) -> dict:
    medians = {k: statistics.median(v) for k, v in rates.items()}
    return {'measure': name, 'images_per_s': {k: round(v) for k, v in medians.items()},
            'shipped_over_other': round(medians[shipped] / medians[other], 3),
            'runs': {k: [round(r) for r in v] for k, v in rates.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    if jax.local_device_count() < 2:
        sys.exit('needs two devices: XLA_FLAGS was set before this script ran; unset it')
    for model_name in BATCH:
        print(json.dumps(guard_cost(model_name, args.repeats)), flush=True)
        print(json.dumps(pmap_metrics_cost(model_name, args.repeats)), flush=True)


if __name__ == '__main__':
    main()
