"""Max-pooling without `select_and_scatter`: the same functions as `flax.linen.max_pool`, gradients included.

`max_pool`, non-overlapping tiles, was written for XLA:CPU: window == strides and VALID padding, about 1.2x
faster for the digits CNN's train step. `strided_max_pool` (overlapping windows: the ResNet stem's 3x3 / 2) exists
for XLA:GPU, which refuses to compile `select_and_scatter` under its deterministic ops (train.deterministic;
`--xla_gpu_exclude_nondeterministic_ops`): its gradient is strided slices and pads, which are deterministic.

`nn.max_pool` lowers to `reduce_window` and its gradient to `select_and_scatter`, which XLA:CPU compiles into
generic window loops. A window that tiles the image is a reshape, and its maximum a plain reduction that fuses with
its neighbours. The gradient goes, as `select_and_scatter`'s does, wholly to the first maximum of each window in
row-major order (jnp.max's own gradient would split it among ties, which are common after a ReLU on a flat
background), so a model computes bit for bit what it computed with `nn.max_pool`.
"""

from functools import partial

import jax
import jax.numpy as jnp


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool(x: jax.Array, window: int) -> jax.Array:
    """Max over `window` x `window` tiles of NHWC `x` (rows and columns that do not fill a tile are dropped)."""
    return jnp.max(_tiles(x, window), axis=(2, 4))


def _tiles(x, window):
    b, h, w, c = x.shape
    h, w = h - h % window, w - w % window
    return x[:, :h, :w].reshape(b, h // window, window, w // window, window, c)


def _forward(x, window):
    tiles = _tiles(x, window)
    pooled = jnp.max(tiles, axis=(2, 4))
    return pooled, (tiles, pooled, x.shape)


def _backward(window, residuals, grad):
    tiles, pooled, shape = residuals
    taken = jnp.zeros(pooled.shape, bool)
    rows = []
    for i in range(window):
        row = []
        for j in range(window):
            first = (tiles[:, :, i, :, j, :] == pooled) & ~taken
            taken = taken | first
            row.append(jnp.where(first, grad, jnp.zeros_like(grad)))
        rows.append(jnp.stack(row, axis=3))  # [b, h/k, w/k, k(j), c]
    dx = jnp.stack(rows, axis=2)  # [b, h/k, k(i), w/k, k(j), c]
    b, h, w, c = shape
    dx = dx.reshape(b, h - h % window, w - w % window, c)
    return (jnp.pad(dx, ((0, 0), (0, h % window), (0, w % window), (0, 0))),)


max_pool.defvjp(_forward, _backward)


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def strided_max_pool(x: jax.Array, window: int, stride: int, padding: int) -> jax.Array:
    """Max over `window` x `window` windows of NHWC `x` every `stride` pixels, `padding` pixels of -inf on each
    side: `nn.max_pool(x, (window, window), strides=(stride, stride), padding=((padding, padding),) * 2)`."""
    return _strided_forward(x, window, stride, padding)[0]


def _windows(x, window, stride, padding):
    """The padded input, and for each offset (i, j) of a window, row-major, the strided slice of the input
    that offset reads: pooled = max over the slices."""
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=-jnp.inf)
    h = (padded.shape[1] - window) // stride + 1
    w = (padded.shape[2] - window) // stride + 1
    slices = [
        [padded[:, i : i + stride * (h - 1) + 1 : stride, j : j + stride * (w - 1) + 1 : stride] for j in range(window)]
        for i in range(window)
    ]
    return padded, slices


def _strided_forward(x, window, stride, padding):
    padded, slices = _windows(x, window, stride, padding)
    pooled = slices[0][0]
    for row in slices:
        for part in row:
            pooled = jnp.maximum(pooled, part)
    return pooled, (x, pooled)


def _strided_backward(window, stride, padding, residuals, grad):
    x, pooled = residuals
    padded, slices = _windows(x, window, stride, padding)
    taken = jnp.zeros(pooled.shape, bool)
    dx = jnp.zeros(padded.shape, grad.dtype)
    h, w = pooled.shape[1:3]
    for i in range(window):
        for j in range(window):  # the whole gradient to each window's first maximum, as select_and_scatter
            first = (slices[i][j] == pooled) & ~taken
            taken = taken | first
            spread = jax.lax.pad(
                jnp.where(first, grad, jnp.zeros_like(grad)),
                jnp.zeros((), grad.dtype),
                (
                    (0, 0, 0),
                    (i, padded.shape[1] - i - stride * (h - 1) - 1, stride - 1),
                    (j, padded.shape[2] - j - stride * (w - 1) - 1, stride - 1),
                    (0, 0, 0),
                ),
            )
            dx = dx + spread
    return (dx[:, padding : padding + x.shape[1], padding : padding + x.shape[2]],)


strided_max_pool.defvjp(_strided_forward, _strided_backward)
