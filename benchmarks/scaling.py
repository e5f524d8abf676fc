"""Throughput of the train step against batch size and against the number of (fake) CPU devices, with each
process's peak host memory.

    python benchmarks/scaling.py                                   # small CNN on digits-sized inputs
    python benchmarks/scaling.py --model resnet --batches 32 64 128 256

Each point runs in a fresh process (the device count must be set before jax is imported), compile excluded:
  - batch sweep: the jit runner on one device;
  - device sweep: the sharded runner (jit over a mesh) at a fixed global batch on 1, 2, 4 and 8 XLA host devices,
    which on a CPU share the same cores: it shows what splitting a batch across devices costs, not a speed-up.
Peak memory is the process's maximum resident set size (ru_maxrss).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

POINT = r'''
import json, resource, sys, time
import jax, numpy as np, optax
from jaxdl.config import apply_updates, default_config
from jaxdl.models import build_model
from jaxdl.tasks import build_task
from jaxdl.train.state import create_train_state
from jaxdl.train.runners import make_runner
model, batch, parallel, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
config = apply_updates(default_config(), {
    'model.name': model, 'model.options': {'depth': 10, 'width': 16, 'stem': 'small'} if model == 'resnet' else {}})
task = build_task(config.task, 10)
runner = make_runner(parallel, task)
state = runner.place_state(create_train_state(build_model(config.model, 10), optax.sgd(0.01, 0.9), seed=0,
                                              image_shape=(size, size, 1)))
data = {'image': np.random.rand(batch, size, size, 1).astype(np.float32), 'valid': np.ones(batch, bool),
        'label': np.random.randint(0, 10, batch).astype(np.int32)}
for _ in range(3):
    state, sums = runner.train(state, data)
jax.block_until_ready(sums)
steps, start = 0, time.perf_counter()
while time.perf_counter() - start < 3.0 or steps < 10:
    state, sums = runner.train(state, data)
    steps += 1
    if runner.max_steps_in_flight:  # as fit() bounds multi-device dispatch on CPU
        jax.block_until_ready(sums)
jax.block_until_ready(sums)
rate = steps * batch / (time.perf_counter() - start)
print(json.dumps({'images_per_s': round(rate), 'devices': runner.num_devices,
                  'peak_rss_mib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
'''


def point(model: str, batch: int, parallel: str, size: int, devices: int) -> dict:
    env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
    out = subprocess.run([sys.executable, '-c', POINT, model, str(batch), parallel, str(size)], capture_output=True,
                         text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='cnn', choices=('cnn', 'resnet'))
    parser.add_argument('--image-size', type=int, default=8)
    parser.add_argument('--batches', type=int, nargs='+', default=[16, 32, 64, 128, 256, 512, 1024])
    parser.add_argument('--devices', type=int, nargs='+', default=[1, 2, 4, 8])
    parser.add_argument('--device-batch', type=int, default=256, help='global batch of the device sweep')
    args = parser.parse_args()
    for batch in args.batches:
        print(json.dumps({'sweep': 'batch', 'model': args.model, 'batch': batch,
                          **point(args.model, batch, 'jit', args.image_size, 1)}), flush=True)
    for devices in args.devices:
        print(json.dumps({'sweep': 'devices', 'model': args.model, 'batch': args.device_batch,
                          **point(args.model, args.device_batch, 'sharded', args.image_size, devices)}), flush=True)


if __name__ == '__main__':
    main()
