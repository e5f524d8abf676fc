"""Does glibc's allocator cost the train step? The jitted step's rate with default malloc thresholds against raised
ones (MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_, so XLA's large per-step buffers are reused rather than
mapped and unmapped every step), each in a fresh process, alternating, with and without TensorFlow imported
(TensorFlow sets its own trim threshold at import).

    python benchmarks/malloc_thresholds.py --repeats 4
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

RAISED = {'MALLOC_MMAP_THRESHOLD_': str(32 * 2 ** 20), 'MALLOC_TRIM_THRESHOLD_': str(2 ** 30)}

STEP_RATE = r'''
import os, sys, time
import jax, numpy as np, optax
if os.environ.get('WITH_TENSORFLOW'):
    import tensorflow  # noqa: F401
from jaxdl.config import apply_updates, default_config
from jaxdl.models import build_model
from jaxdl.tasks import build_task
from jaxdl.train.state import create_train_state
from jaxdl.train.runners import make_runner
model, batch = sys.argv[1], int(sys.argv[2])
config = apply_updates(default_config(), {
    'model.name': model, 'model.options': {'depth': 10, 'width': 16, 'stem': 'small'} if model == 'resnet' else {}})
task = build_task(config.task, 10)
runner = make_runner('jit', task)
state = runner.place_state(create_train_state(build_model(config.model, 10), optax.sgd(0.01, 0.9), seed=0,
                                              image_shape=(8, 8, 1)))
data = {'image': np.random.rand(batch, 8, 8, 1).astype(np.float32), 'valid': np.ones(batch, bool),
        'label': np.random.randint(0, 10, batch).astype(np.int32)}
for _ in range(5):
    state, sums = runner.train(state, data)
jax.block_until_ready(sums)
start, steps = time.perf_counter(), 300
for _ in range(steps):
    state, sums = runner.train(state, data)
jax.block_until_ready(sums)
print(steps * batch / (time.perf_counter() - start))
'''


def rate(model: str, batch: int, env: dict) -> float:
    out = subprocess.run([sys.executable, '-c', STEP_RATE, model, str(batch)], capture_output=True, text=True,
                         check=True, env={**os.environ, **env})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=4)
    args = parser.parse_args()
    for model, batch in (('cnn', 128), ('resnet', 64)):
        for tensorflow in (False, True):
            base = {'WITH_TENSORFLOW': '1'} if tensorflow else {}
            runs = {'default': [], 'raised': []}
            for _ in range(args.repeats):
                runs['default'].append(rate(model, batch, base))
                runs['raised'].append(rate(model, batch, {**base, **RAISED}))
            medians = {k: statistics.median(v) for k, v in runs.items()}
            print(json.dumps({'model': model, 'batch': batch, 'tensorflow_imported': tensorflow,
                              'default_images_per_s': round(medians['default']),
                              'raised_images_per_s': round(medians['raised']),
                              'ratio': round(medians['raised'] / medians['default'], 3),
                              'spread': {k: [round(min(v)), round(max(v))] for k, v in runs.items()}}), flush=True)


if __name__ == '__main__':
    main()
