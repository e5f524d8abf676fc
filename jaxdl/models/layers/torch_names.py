"""What the torch name mappings of the built-in models share (`TORCH_NAMES` in `resnet.py` and `vit.py`): a
torch state dict's layers put into a flax variables tree, re-laid out where the conventions differ.

A torch convolution [out, in, h, w] becomes flax's [h, w, in, out], a linear layer [out, in] becomes [in, out],
BatchNorm's running statistics go to the `batch_stats` collection. Each function returns the torch names it used,
so a mapping can hand back the names it did not recognise.
"""

from __future__ import annotations

import numpy as np


def empty() -> dict:
    """The variables a mapping fills: {'params': {}, 'batch_stats': {}}."""
    return {'params': {}, 'batch_stats': {}}


def conv_kernel(weight: np.ndarray) -> np.ndarray:  # torch [out, in, h, w] -> flax [h, w, in, out]
    return weight.transpose(2, 3, 1, 0)


def dense_kernel(weight: np.ndarray) -> np.ndarray:  # torch [out, in] -> flax [in, out]
    return weight.T


def put(tree: dict, path: str, value) -> None:
    """`value` at the '/'-separated `path` of a nested dict, making the dicts on the way."""
    *parents, leaf = path.split('/')
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def batch_norm(state: dict, prefix: str, target: str, out: dict) -> set[str]:
    """torch BatchNorm `prefix` -> flax BatchNorm at `target` (scale and bias; mean and var in batch_stats)."""
    used = set()
    for torch_name, collection, name in (
        ('weight', 'params', 'scale'),
        ('bias', 'params', 'bias'),
        ('running_mean', 'batch_stats', 'mean'),
        ('running_var', 'batch_stats', 'var'),
    ):
        key = f'{prefix}.{torch_name}'
        if key in state:
            put(out[collection], f'{target}/{name}', state[key])
            used.add(key)
    return used


def linear(state: dict, prefix: str, target: str, out: dict, kernel=dense_kernel) -> set[str]:
    """torch `prefix.weight` / `prefix.bias` -> flax `target/kernel` (re-laid out by `kernel`) / `target/bias`."""
    used = set()
    if f'{prefix}.weight' in state:
        put(out['params'], f'{target}/kernel', kernel(state[f'{prefix}.weight']))
        used.add(f'{prefix}.weight')
    if f'{prefix}.bias' in state:
        put(out['params'], f'{target}/bias', state[f'{prefix}.bias'])
        used.add(f'{prefix}.bias')
    return used


def layer_norm(state: dict, prefix: str, target: str, out: dict) -> set[str]:
    used = set()
    for torch_name, name in (('weight', 'scale'), ('bias', 'bias')):
        if f'{prefix}.{torch_name}' in state:
            put(out['params'], f'{target}/{name}', state[f'{prefix}.{torch_name}'])
            used.add(f'{prefix}.{torch_name}')
    return used
