"""StableHLO through `jax.export`: one file that jax alone loads and calls (no jaxdl, no Flax), the weights
embedded, lowered for the CPU and for CUDA GPUs.

    exported = jax.export.deserialize(open('model.stablehlo', 'rb').read())
    outputs = exported.call(images)   # uint8 [N, H, W, C] -> {name: array}
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from jaxdl.export.serving import Serving

FILE = 'model.stablehlo'
PLATFORMS = ('cpu', 'cuda')


def write(serving: Serving, batch: int | None, output: Path) -> dict:
    exported = jax.export.export(jax.jit(serving.__call__), platforms=PLATFORMS)(serving.input_spec(batch))
    (output / FILE).write_bytes(exported.serialize())
    return {'file': FILE, 'platforms': list(PLATFORMS), 'load': 'jax.export.deserialize(bytes).call(images)'}


def load(output: Path) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    exported = jax.export.deserialize(bytearray((output / FILE).read_bytes()))
    return lambda images: {name: np.asarray(value) for name, value in exported.call(images).items()}
