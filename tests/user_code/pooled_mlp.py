"""A user's model with its own torch name mapping, in one file: `TORCH_NAMES` beside `MODEL`, as the built-in
ResNet and ViT keep theirs (tests/test_imported_weights.py imports a torch network's weights through it).

The torch network it maps: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, width), nn.ReLU(),
nn.Linear(width, outputs))."""
import flax.linen as nn
import jax.numpy as jnp

from jaxdl.models.layers import torch_names
from jaxdl.models.layers.heads import BackboneAndHead, DenseHead


class PooledMLP(nn.Module):
    width: int = 16

    @nn.compact
    def __call__(self, images, *, train: bool = False, axis_name=None):
        del train, axis_name
        return nn.relu(nn.Dense(self.width)(jnp.mean(images, axis=(1, 2))))


def MODEL(num_outputs: int, *, width: int = 16):
    return BackboneAndHead(backbone=PooledMLP(width), head=DenseHead(num_outputs=num_outputs))


def TORCH_NAMES(state: dict, backbone) -> tuple[dict, list[str]]:
    del backbone
    out = torch_names.empty()
    used = torch_names.linear(state, '2', 'backbone/Dense_0', out) | torch_names.linear(state, '4', 'head/Dense_0', out)
    return out, [k for k in state if k not in used]
