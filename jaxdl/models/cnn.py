"""The default small CNN: conv blocks (two 3x3 convs + 2x2 max-pool each), then one dense layer."""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxdl.models.pooling import max_pool


class SmallCNN(nn.Module):
    features: Sequence[int] = (32, 64)
    dense: int = 128
    dropout: float = 0.0  # under pmap each device draws its own mask: exact pmap == jit needs dropout 0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False, axis_name=None):
        del axis_name  # no cross-example statistics in this model
        x = x.astype(self.dtype)
        for width in self.features:
            x = nn.relu(nn.Conv(width, (3, 3), dtype=self.dtype)(x))
            x = nn.relu(nn.Conv(width, (3, 3), dtype=self.dtype)(x))
            x = max_pool(x, 2)
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.dense, dtype=self.dtype)(x))
        return nn.Dropout(self.dropout, deterministic=not train or self.dropout == 0.0)(x)
