"""Stochastic depth (Huang et al. 2016), as DeiT and timm use it in ViTs and ResNets: each residual branch is
dropped for a whole example, at a rate increasing linearly with the block's depth."""

from __future__ import annotations

import flax.linen as nn

from jaxdl.errors import ConfigError


def drop_path(rate: float, train: bool, ndim: int) -> nn.Dropout:
    """Stochastic depth (Huang et al. 2016): a residual branch dropped for a whole example with probability
    `rate` and scaled by 1 / (1 - rate) when kept, so its expectation is unchanged; flax's Dropout with one draw
    per example (broadcast over every other dimension), from the 'dropout' RNG."""
    return nn.Dropout(rate, broadcast_dims=tuple(range(1, ndim)), deterministic=not train or rate == 0.0)


def drop_path_rates(rate: float, blocks: int) -> list[float]:
    """Stochastic depth increasing linearly over the blocks, 0 at the first and `rate` at the last (DeiT, timm)."""
    return [rate * i / max(blocks - 1, 1) for i in range(blocks)]


def check_drop_path(rate) -> float:
    if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ConfigError(
            f"config key 'model.options.drop_path': must be in [0, 1) (the last block's stochastic "
            f'depth rate; 0 = off), got {rate!r}'
        )
    return float(rate)
