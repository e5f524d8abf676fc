"""The default small CNN: conv blocks (two 3x3 convs + 2x2 max-pool each), then one dense layer."""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.models.layers.heads import BackboneAndHead, DenseHead, check_head
from jaxdl.models.layers.pooling import max_pool


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


def MODEL(
    num_outputs: int,
    *,
    features: Sequence[int] = (32, 64),
    dense: int = 128,
    dropout: float = 0.0,
    dtype=jnp.float32,
    head: str = 'dense',
) -> BackboneAndHead:
    """`model.name='cnn'`; `model.options`: features (widths of the conv blocks), dense (units), dropout."""
    if not features or not all(isinstance(f, int) and f > 0 for f in features):
        raise ConfigError(f"config key 'model.options.features': must be positive integers, got {features!r}")
    if not isinstance(dense, int) or dense <= 0:
        raise ConfigError(f"config key 'model.options.dense': must be a positive integer, got {dense!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"config key 'model.options.dropout': must be in [0, 1), got {dropout!r}")
    check_head('cnn', 'vector', head)
    return BackboneAndHead(
        backbone=SmallCNN(tuple(features), dense, float(dropout), dtype),
        head=DenseHead(num_outputs=num_outputs, dtype=dtype),
    )
