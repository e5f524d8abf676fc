"""Where the train step's time goes on XLA:CPU, and what the two lowering switches win, as achieved GFLOP/s
against the machine's own measured matmul rate.

    python benchmarks/xla_cpu.py --repeats 3
    python benchmarks/xla_cpu.py --models cnn --variants shipped patches first --repeats 5

Variants of jaxdl's jitted train step (`make_runner('jit', ...)`), each point in a fresh process, alternating:
  - `xla`: what XLA does by default (convolutions, dots and reductions handed to YNNPACK; `flax.linen.max_pool`,
    i.e. reduce_window, and select_and_scatter for its gradient);
  - `eigen`: `train.cpu_convolutions='eigen'` only (Eigen's convolutions; dots and reductions stay YNNPACK's);
  - `tiles`: jaxdl's tile max-pool (`jaxdl.models.layers.pooling`) only;
  - `shipped`: both, jaxdl's defaults;
  - `patches`: the shipped step with every 3x3 convolution of the CNN lowered as patches + one matmul
    (im2col by nine shifted slices; tried, not shipped);
  - `first`: the shipped step with only the convolutions of at most 27 inputs per output (the CNN's one-channel
    input layer) lowered as patches + matmul (tried, not shipped; not run unless named).
FLOPs per step are XLA's cost analysis of the step before optimisation (the algorithm's work, the same for
every variant). The matmul rate is a jitted float32 2048x2048 matmul in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

POINT = r'''
import json, sys
import flax.linen as nn, jax, jax.numpy as jnp, numpy as np, optax
import jaxdl.models.cnn, jaxdl.models.unet
from jaxdl.config import apply_updates, default_config
from jaxdl.models import build_model
from jaxdl.tasks import build_task
from jaxdl.train.state import create_train_state
from jaxdl.train.runners import make_runner

model_name, variant, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])

if variant in ('xla', 'eigen'):  # flax's reduce_window max-pool, as before jaxdl.models.layers.pooling
    reduce_window = lambda x, window: nn.max_pool(x, (window, window), strides=(window, window))
    jaxdl.models.cnn.max_pool = jaxdl.models.unet.max_pool = reduce_window

if variant in ('patches', 'first'):
    from conv_layers import patches_conv  # this directory is on the point's PYTHONPATH (run() below)
    class PatchesConv(nn.Module):  # a SAME, stride-1 3x3 convolution as im2col (nine shifted slices) + one matmul
        features: int
        kernel_size: tuple
        dtype: object = jnp.float32
        @nn.compact
        def __call__(self, x):
            assert tuple(self.kernel_size) == (3, 3), self.kernel_size
            kernel = self.param('kernel', nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features))
            bias = self.param('bias', nn.initializers.zeros, (self.features,))
            return patches_conv(x, kernel) + bias
    class FirstLayerPatchesConv(nn.Module):  # patches only where a patch is small (the one-channel input layer)
        features: int
        kernel_size: tuple
        dtype: object = jnp.float32
        @nn.compact
        def __call__(self, x):
            small = x.shape[-1] * self.kernel_size[0] * self.kernel_size[1] <= 27
            return (PatchesConv if small else nn.Conv)(self.features, self.kernel_size, dtype=self.dtype)(x)
    jaxdl.models.cnn.nn = type('nn', (), {**{k: getattr(nn, k) for k in dir(nn) if not k.startswith('_')},
                                          'Conv': PatchesConv if variant == 'patches' else FirstLayerPatchesConv})

updates = {'model.name': model_name, 'train.cpu_convolutions': 'ynnpack' if variant in ('xla', 'tiles') else 'eigen',
           'model.options': {'resnet': {'depth': 10, 'width': 16, 'stem': 'small'},
                             'unet': {'features': (16, 32, 64, 128)}}.get(model_name, {})}
if model_name == 'unet':
    updates['task.name'] = 'segmentation'
config = apply_updates(default_config(), updates)
size, channels, outputs = (64, 3, 4) if model_name == 'unet' else (8, 1, 10)
task = build_task(config.task, outputs)
runner = make_runner('jit', task, config.train.cpu_convolutions)
model = build_model(config.model, outputs, task.head_options)
state = runner.place_state(create_train_state(model, optax.sgd(0.01, 0.9), seed=0,
                                              image_shape=(size, size, channels)))
rng = np.random.default_rng(0)
data = {'image': rng.random((batch, size, size, channels), np.float32), 'valid': np.ones(batch, bool)}
if model_name == 'unet':
    data['mask'] = rng.integers(0, outputs, (batch, size, size)).astype(np.int32)
else:
    data['label'] = rng.integers(0, outputs, batch).astype(np.int32)
from functools import partial
from jaxdl.train.step import train_step
from timing import images_per_s  # this directory is on the point's PYTHONPATH (run() below)
flops = jax.jit(partial(train_step, task=task)).lower(state, data).cost_analysis()['flops']
rate = images_per_s(runner.train, state, data, batch, seconds=4.0, min_steps=10)
print(json.dumps({'images_per_s': rate, 'gflop_per_step': flops / 1e9, 'gflops': flops * rate / batch / 1e9}))
'''

MATMUL = r'''
import json, time, jax, jax.numpy as jnp
a = jnp.ones((2048, 2048)); f = jax.jit(lambda a: a @ a); f(a).block_until_ready()
start = time.perf_counter()
for _ in range(20): out = f(a)
out.block_until_ready()
print(json.dumps({'gflops': 20 * 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e9}))
'''

BATCH = {'cnn': 128, 'resnet': 64, 'unet': 32}


def run(script: str, *args) -> dict:
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get('PYTHONPATH')]))
    out = subprocess.run([sys.executable, '-c', script, *map(str, args)], capture_output=True, text=True,
                         env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3', 'PYTHONPATH': path})
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=['cnn', 'resnet', 'unet'], choices=list(BATCH))
    parser.add_argument('--variants', nargs='+', default=['xla', 'eigen', 'tiles', 'shipped', 'patches'])
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    matmul = []
    for model in args.models:
        variants = [v for v in args.variants if v not in ('patches', 'first') or model == 'cnn']
        rates = {v: [] for v in variants}
        flops = {}
        for _ in range(args.repeats):
            matmul.append(run(MATMUL)['gflops'])
            for variant in variants:
                point = run(POINT, model, variant, BATCH[model])
                rates[variant].append(point['images_per_s'])
                flops[variant] = point['gflop_per_step']
        base = statistics.median(rates['xla']) if 'xla' in rates else None
        for variant in variants:
            rate = statistics.median(rates[variant])
            gflops = flops[variant] * rate / BATCH[model]
            print(json.dumps({'model': model, 'batch': BATCH[model], 'variant': variant, 'images_per_s': round(rate),
                              'vs_xla': round(rate / base, 3) if base else None,
                              'gflop_per_step': round(flops[variant], 3), 'achieved_gflops': round(gflops, 1),
                              'runs': [round(r) for r in rates[variant]]}), flush=True)
    print(json.dumps({'matmul_2048_gflops': round(statistics.median(matmul), 1),
                      'runs': [round(m, 1) for m in matmul]}))


if __name__ == '__main__':
    main()
