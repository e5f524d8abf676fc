"""Weights from the PyTorch ecosystem: a torchvision or timm state dict, read from `.safetensors` or `.pth`, mapped
onto jaxdl's own modules, so that the jaxdl model computes what the source network computes.

    ResNet (torchvision `resnet18/34/50/...`, timm `resnet18/34/50/...`)  -> model.name 'resnet', stem 'imagenet'
    ViT (timm `vit_{tiny,small,base}_patch16_*`)                         -> model.name 'vit'

Each mapping lives beside the model it maps onto, as the `TORCH_NAMES` its module exports (`models/resnet.py`,
`models/vit.py`; a user's model module may export one too). A mapping only renames and re-lays out
(`models/layers/torch_names.py`); anything it does not recognise comes back under its torch name, so that
`jaxdl.transfer` reports it as a key the jaxdl model lacks.

A `.safetensors` file is read with the `safetensors` package alone (no torch). A `.pth` is a pickle, which can run
code as it loads: it is read only with `torch.load(weights_only=True)`, which refuses anything but tensors and plain
containers, and refused outright where torch is not installed.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np

from jaxdl.errors import TransferError
from jaxdl.registry import MODELS

SUFFIXES = ('.safetensors', '.pth', '.pt', '.bin')
# Checkpoint files often wrap the state dict: {'state_dict': {...}} (Lightning, many training scripts), {'model': ...}.
WRAPPER_KEYS = ('state_dict', 'model', 'model_state_dict', 'module')
# In torch's state dict, not weights: BatchNorm's update counter.
IGNORED_KEYS = re.compile(r'(^|\.)num_batches_tracked$')


def is_weights_file(path: str) -> bool:
    return Path(path).suffix.lower() in SUFFIXES


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """{torch name: float32 array} from a `.safetensors` or `.pth` file, or a TransferError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise TransferError(f'{path}: no such weights file')
    if path.suffix.lower() == '.safetensors':
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError, TypeError) as e:
            raise TransferError(f'{path} is not a readable safetensors file: {e}') from None
    else:
        tensors = _read_pickled_state_dict(path)
    arrays = {}
    for name, value in tensors.items():
        if IGNORED_KEYS.search(name):
            continue
        arrays[name] = np.asarray(value, np.float32)
    if not arrays:
        raise TransferError(f'{path} holds no tensors: it is not a state dict')
    return arrays


def _read_pickled_state_dict(path: Path) -> dict:
    try:
        import torch
    except ImportError:
        raise TransferError(
            f'{path} is a pickle (.pth), which could run code as it loads; jaxdl reads one only '
            f'through torch.load(weights_only=True), and torch is not installed. Convert it to '
            f'safetensors where torch is installed (safetensors.torch.save_file(torch.load(path, '
            f'weights_only=True), "model.safetensors")) or install torch.'
        ) from None
    try:
        loaded = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001 -- torch raises UnpicklingError, RuntimeError or others for a bad file
        if isinstance(e, pickle.UnpicklingError) or 'weights_only' in str(e).lower():
            raise TransferError(
                f'{path} was refused: it is a pickle holding more than tensors (objects whose '
                f'loading can run code), so it is not read. Save only the state dict '
                f'(torch.save(model.state_dict(), path)) or, better, as safetensors.'
            ) from None
        raise TransferError(f'{path} cannot be read as a PyTorch state dict: {e}') from None
    for key in WRAPPER_KEYS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict) and not torch.is_tensor(loaded.get(key)):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not loaded or not all(torch.is_tensor(v) for v in loaded.values()):
        kind = type(loaded).__name__ if not isinstance(loaded, dict) else 'a dict of other things than tensors'
        raise TransferError(f'{path} holds {kind}, not a state dict (names to tensors): save model.state_dict()')
    return {k.removeprefix('module.'): v.detach().to(torch.float32).numpy() for k, v in loaded.items()}


def describe_architecture(state: dict[str, np.ndarray]) -> str:
    """What the file's names look like, for an error message."""
    if 'pos_embed' in state and 'patch_embed.proj.weight' in state:
        width = state['patch_embed.proj.weight'].shape[0]
        blocks = len({k.split('.')[1] for k in state if k.startswith('blocks.')})
        return f"It looks like a timm ViT (width {width}, {blocks} blocks): model.name 'vit'."
    if 'layer1.0.conv1.weight' in state:
        bottleneck = 'layer1.0.conv3.weight' in state
        counts = [len({k.split('.')[1] for k in state if k.startswith(f'layer{i}.')}) for i in range(1, 5)]
        return (
            f'It looks like a ResNet with {"bottleneck" if bottleneck else "basic"} blocks {tuple(counts)} per '
            f"stage: model.name 'resnet'."
        )
    return 'It looks like neither a torchvision/timm ResNet nor a timm ViT.'


def torch_names(model_name: str):
    """The torch name mapping of model `model_name`: the `TORCH_NAMES` its module exports (a built-in's, or the
    module of a user's model by import path), or None."""
    from jaxdl.models import module_export

    return module_export(model_name, 'TORCH_NAMES')


def to_jaxdl(state: dict[str, np.ndarray], model_name: str, module) -> tuple[dict, list[str]]:
    """({'params': ..., 'model_state': ...} for `module` (a jaxdl BackboneAndHead), the names left unmapped)."""
    mapping = torch_names(model_name)
    if mapping is None:
        mapped = [name for name in MODELS.builtin_names() if torch_names(name)]
        raise TransferError(
            f"a torchvision/timm weights file maps onto jaxdl's {' or '.join(mapped)} models, not "
            f"model.name {model_name!r} (a model's module maps torch names by the TORCH_NAMES it "
            f'exports); start from a jaxdl checkpoint instead'
        )
    variables, unmapped = mapping(state, module.backbone)
    model_state = {'batch_stats': variables['batch_stats']} if variables['batch_stats'] else {}
    return {'params': variables['params'], 'model_state': model_state}, unmapped
