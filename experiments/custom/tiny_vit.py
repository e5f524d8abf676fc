"""A small Vision Transformer written as a researcher would, in a file of their own: plain flax.linen, no jaxdl
import. `vit_digits.py` beside it trains it with `jaxdl train`, through `model.name='tiny_vit:TinyViT'`.

jaxdl constructs it as TinyViT(num_outputs=..., **model.options) (plus `dtype`, since it has that field) and
applies it as module.apply(variables, images, train=...); it returns logits [batch, num_outputs].
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class EncoderBlock(nn.Module):
    """Pre-LayerNorm transformer block: self-attention, then an MLP, each added back to its input."""
    width: int
    heads: int
    mlp_ratio: int = 2
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        y = nn.LayerNorm(dtype=self.dtype)(x)
        y = nn.MultiHeadDotProductAttention(num_heads=self.heads, dtype=self.dtype, deterministic=not train,
                                            dropout_rate=self.dropout)(y, y)
        x = x + y
        y = nn.LayerNorm(dtype=self.dtype)(x)
        y = nn.Dense(self.width * self.mlp_ratio, dtype=self.dtype)(y)
        y = nn.Dense(self.width, dtype=self.dtype)(nn.gelu(y))
        return x + nn.Dropout(self.dropout, deterministic=not train)(y)


class TinyViT(nn.Module):
    num_outputs: int
    patch: int = 2          # square patches of patch x patch pixels
    width: int = 64         # token width
    depth: int = 4          # encoder blocks
    heads: int = 4
    dropout: float = 0.0
    pool: str = 'cls'       # 'cls' (a class token) or 'mean' (global average of the tokens)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool = False):
        x = nn.Conv(self.width, (self.patch, self.patch), strides=self.patch, padding='VALID',
                    dtype=self.dtype, name='patches')(images.astype(self.dtype))
        x = x.reshape(x.shape[0], -1, self.width)
        if self.pool == 'cls':
            token = self.param('cls', nn.initializers.zeros, (1, 1, self.width))
            x = jnp.concatenate([jnp.broadcast_to(token, (x.shape[0], 1, self.width)).astype(x.dtype), x], axis=1)
        position = self.param('position', nn.initializers.normal(0.02), (1, x.shape[1], self.width))
        x = x + position.astype(x.dtype)
        for i in range(self.depth):
            x = EncoderBlock(self.width, self.heads, dropout=self.dropout, dtype=self.dtype, name=f'block_{i}')(x, train)
        x = nn.LayerNorm(dtype=self.dtype)(x)
        x = x[:, 0] if self.pool == 'cls' else jnp.mean(x, axis=1)
        return nn.Dense(self.num_outputs, dtype=self.dtype, name='head')(x).astype(jnp.float32)
