"""The TinyViT of tiny_vit.py written in Flax NNX, the API the Flax team recommends for new code: plain
`flax.nnx`, no jaxdl import. `vit_digits_nnx.py` beside it trains it with `jaxdl train`, through
`model.name='tiny_vit_nnx:TinyViT'`.

jaxdl constructs it as TinyViT(num_outputs=..., image_shape=(H, W, C), **model.options, rngs=...) (plus `dtype`,
since it takes one) inside Flax's bridge, and calls it as model(images, train=...); it returns logits
[batch, num_outputs]. It is the same network as the linen version: the same layers, initialisers and arithmetic,
so the same weights give the same outputs (tests/test_nnx.py); only the attribute names are its own.
"""
from typing import Any

import jax.numpy as jnp
from flax import nnx


class EncoderBlock(nnx.Module):
    """Pre-LayerNorm transformer block: self-attention, then an MLP, each added back to its input."""

    def __init__(self, width: int, heads: int, *, mlp_ratio: int = 2, dropout: float = 0.0, dtype: Any = jnp.float32,
                 rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(width, dtype=dtype, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(heads, width, dtype=dtype, dropout_rate=dropout, decode=False,
                                                rngs=rngs)
        self.norm2 = nnx.LayerNorm(width, dtype=dtype, rngs=rngs)
        self.mlp_in = nnx.Linear(width, width * mlp_ratio, dtype=dtype, rngs=rngs)
        self.mlp_out = nnx.Linear(width * mlp_ratio, width, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x, *, train: bool):
        y = self.norm1(x)
        x = x + self.attention(y, y, deterministic=not train)
        y = self.mlp_out(nnx.gelu(self.mlp_in(self.norm2(x))))
        return x + self.dropout(y, deterministic=not train)


class TinyViT(nnx.Module):
    def __init__(self, num_outputs: int, image_shape: tuple[int, int, int], *, patch: int = 2, width: int = 64,
                 depth: int = 4, heads: int = 4, dropout: float = 0.0, pool: str = 'cls', dtype: Any = jnp.float32,
                 rngs: nnx.Rngs):
        height, wide, channels = image_shape
        self.pool, self.width, self.dtype, self.depth = pool, width, dtype, depth
        self.patches = nnx.Conv(channels, width, (patch, patch), strides=patch, padding='VALID', dtype=dtype,
                                rngs=rngs)
        tokens = (height // patch) * (wide // patch) + (pool == 'cls')
        if pool == 'cls':
            self.cls = nnx.Param(jnp.zeros((1, 1, width)))
        self.position = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (1, tokens, width)))
        for i in range(depth):
            setattr(self, f'block_{i}', EncoderBlock(width, heads, dropout=dropout, dtype=dtype, rngs=rngs))
        self.norm = nnx.LayerNorm(width, dtype=dtype, rngs=rngs)
        self.head = nnx.Linear(width, num_outputs, dtype=dtype, rngs=rngs)

    def __call__(self, images, *, train: bool = False):
        x = self.patches(images.astype(self.dtype))
        x = x.reshape(x.shape[0], -1, self.width)
        if self.pool == 'cls':
            token = jnp.broadcast_to(self.cls[...], (x.shape[0], 1, self.width)).astype(x.dtype)
            x = jnp.concatenate([token, x], axis=1)
        x = x + self.position[...].astype(x.dtype)
        for i in range(self.depth):
            x = getattr(self, f'block_{i}')(x, train=train)
        x = self.norm(x)
        x = x[:, 0] if self.pool == 'cls' else jnp.mean(x, axis=1)
        return self.head(x).astype(jnp.float32)
