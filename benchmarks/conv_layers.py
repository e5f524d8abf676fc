"""The small CNN's convolutions one layer at a time under jaxdl's CPU lowering (Eigen's convolutions), and the
ways of computing a layer that were tried against them, as achieved GFLOP/s.

    python benchmarks/conv_layers.py --repeats 3

For each 3x3 SAME layer of the digits CNN at batch 128 (1->32 and 32->32 at 8x8, 32->64 and 64->64 at 4x4):
  - `forward`, `input_grad`, `weight_grad`: XLA's own convolution and the two gradients JAX derives from it;
  - weight-gradient alternatives, each checked against `weight_grad` (relative error printed):
      `wgrad_patches`: im2col by nine shifted slices, then one matmul patches^T @ dy;
      `wgrad_shifts`: nine matmuls, one per kernel tap, each contracting a shifted slice with dy;
      `wgrad_halves`: the batch split in two, two convolutions XLA may run side by side, summed;
  - `gemm_same_shape`, `gemm_transposed`: a plain matmul of the weight gradient's shape (9*cin x rows x cout),
    with the contraction contiguous and with it transposed as the patches formulation needs: the ceiling any
    matmul lowering of the weight gradient could reach here;
  - `layer_eigen`, `layer_patches`: forward and both gradients, with XLA's convolution and with the layer as
    patches + one matmul (`patches_conv`, which xla_cpu.py's `patches` and `first` variants also use).
Everything compiles with `jaxdl.train.runners.compiler_options('eigen')`, as the train step does. Each repetition
runs every point once, in order, in this one process; the figures are medians over repetitions.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdl.train.runners import compiler_options

LAYERS = ((1, 32, 8), (32, 32, 8), (32, 64, 4), (64, 64, 4))  # (in channels, out channels, height = width)
BATCH = 128


def conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def shifted(x):
    """The nine 3x3-tap views of x (SAME padding), each of x's shape."""
    h, w = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return [padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)]


def patches(x):
    """im2col: one row per output position, its 3x3 neighbourhood's inputs (tap-major), (rows, 9 * channels)."""
    return jnp.concatenate(shifted(x), -1).reshape(-1, 9 * x.shape[-1])


def patches_conv(x, w):
    return (patches(x) @ w.reshape(-1, w.shape[3])).reshape(*x.shape[:3], w.shape[3])


def weight_grad(x, dy):
    return jax.vjp(lambda w: conv(x, w), jnp.zeros((3, 3, x.shape[-1], dy.shape[-1]), x.dtype))[1](dy)[0]


def wgrad_patches(x, dy):
    cin, cout = x.shape[-1], dy.shape[-1]
    return (patches(x).T @ dy.reshape(-1, cout)).reshape(3, 3, cin, cout)


def wgrad_shifts(x, dy):
    taps = [jnp.einsum('bhwc,bhwd->cd', tap, dy) for tap in shifted(x)]
    return jnp.stack(taps).reshape(3, 3, x.shape[-1], dy.shape[-1])


def wgrad_halves(x, dy):
    half = x.shape[0] // 2
    return weight_grad(x[:half], dy[:half]) + weight_grad(x[half:], dy[half:])


def points(cin: int, cout: int, size: int) -> dict:
    """name -> (function, arguments, FLOPs it is credited with: the direct convolution's, for comparison)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((BATCH, size, size, cin), np.float32))
    w = jnp.asarray(rng.standard_normal((3, 3, cin, cout), np.float32) / np.sqrt(9 * cin))
    dy = jnp.asarray(rng.standard_normal((BATCH, size, size, cout), np.float32))
    rows = BATCH * size * size
    a = jnp.asarray(rng.standard_normal((9 * cin, rows), np.float32))
    b = jnp.asarray(rng.standard_normal((rows, cout), np.float32))
    flops = 2 * 9 * cin * cout * rows
    layer = lambda f: (lambda x, w, dy: jax.vjp(f, x, w)[1](dy))  # noqa: E731  (forward + both gradients)
    return {
        'forward': (conv, (x, w), flops),
        'input_grad': (lambda w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0], (w, dy), flops),
        'weight_grad': (weight_grad, (x, dy), flops),
        'wgrad_patches': (wgrad_patches, (x, dy), flops),
        'wgrad_shifts': (wgrad_shifts, (x, dy), flops),
        'wgrad_halves': (wgrad_halves, (x, dy), flops),
        'gemm_same_shape': (lambda a, b: a @ b, (a, b), flops),
        'gemm_transposed': (lambda a, b: a.T @ b, (a.T.copy(), b), flops),
        'layer_eigen': (layer(conv), (x, w, dy), 3 * flops),
        'layer_patches': (layer(patches_conv), (x, w, dy), 3 * flops),
    }


def seconds_per_call(compiled, args, min_seconds: float = 0.5) -> float:
    for _ in range(5):
        out = compiled(*args)
    jax.block_until_ready(out)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds or calls < 20:
        out = compiled(*args)
        calls += 1
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    options = compiler_options('eigen')
    for cin, cout, size in LAYERS:
        table = points(cin, cout, size)
        compiled = {name: jax.jit(f, compiler_options=options).lower(*a).compile() for name, (f, a, _) in
                    table.items()}
        reference = np.asarray(compiled['weight_grad'](*table['weight_grad'][1]))
        errors = {name: float(np.abs(np.asarray(compiled[name](*table[name][1])) - reference).max()
                              / np.abs(reference).max()) for name in table if name.startswith('wgrad_')}
        times = {name: [] for name in table}
        for _ in range(args.repeats):
            for name, (_, a, _) in table.items():
                times[name].append(seconds_per_call(compiled[name], a))
        for name, (_, _, flops) in table.items():
            seconds = statistics.median(times[name])
            print(json.dumps({'layer': f'{cin}->{cout} at {size}x{size}', 'point': name,
                              'us': round(seconds * 1e6), 'gflops': round(flops / seconds / 1e9, 1),
                              **({'relative_error': float(f'{errors[name]:.1e}')} if name in errors else {})}),
                  flush=True)


if __name__ == '__main__':
    main()
