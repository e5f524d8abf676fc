"""Weights from the PyTorch ecosystem: a torchvision or timm state dict, read from `.safetensors` or `.pth`, mapped
onto jaxdl's own modules, so that the jaxdl model computes what the source network computes.

    ResNet (torchvision `resnet18/34/50/...`, timm `resnet18/34/50/...`)  -> model.name 'resnet', stem 'imagenet'
    ViT (timm `vit_{tiny,small,base}_patch16_*`)                         -> model.name 'vit'

A mapping only renames and re-lays out: a torch convolution [out, in, h, w] becomes flax's [h, w, in, out], a
linear layer [out, in] becomes [in, out], attention's fused qkv projection becomes flax's per-head query, key and
value kernels, BatchNorm's running statistics become the `batch_stats` collection. Anything the mapping does not
recognise is kept under its torch name, so that `jaxdl.transfer` reports it as a key the jaxdl model lacks.

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
        raise TransferError(f'{path} is a pickle (.pth), which could run code as it loads; jaxdl reads one only '
                            f'through torch.load(weights_only=True), and torch is not installed. Convert it to '
                            f'safetensors where torch is installed (safetensors.torch.save_file(torch.load(path, '
                            f'weights_only=True), "model.safetensors")) or install torch.') from None
    try:
        loaded = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001 -- torch raises UnpicklingError, RuntimeError or others for a bad file
        if isinstance(e, pickle.UnpicklingError) or 'weights_only' in str(e).lower():
            raise TransferError(f'{path} was refused: it is a pickle holding more than tensors (objects whose '
                                f'loading can run code), so it is not read. Save only the state dict '
                                f'(torch.save(model.state_dict(), path)) or, better, as safetensors.') from None
        raise TransferError(f'{path} cannot be read as a PyTorch state dict: {e}') from None
    for key in WRAPPER_KEYS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict) and not torch.is_tensor(loaded.get(key)):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not loaded or not all(torch.is_tensor(v) for v in loaded.values()):
        kind = type(loaded).__name__ if not isinstance(loaded, dict) else 'a dict of other things than tensors'
        raise TransferError(f'{path} holds {kind}, not a state dict (names to tensors): save '
                            f'model.state_dict()')
    return {k.removeprefix('module.'): v.detach().to(torch.float32).numpy() for k, v in loaded.items()}


# ---------------------------------------------------------------------------------------------------- mappings


def _conv(weight):   # torch [out, in, h, w] -> flax [h, w, in, out]
    return weight.transpose(2, 3, 1, 0)


def _dense(weight):  # torch [out, in] -> flax [in, out]
    return weight.T


def _put(tree: dict, path: str, value) -> None:
    *parents, leaf = path.split('/')
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def _batch_norm(state: dict, prefix: str, target: str, out: dict) -> set[str]:
    """torch BatchNorm `prefix` -> flax BatchNorm at `target` (scale and bias; mean and var in batch_stats)."""
    used = set()
    for torch_name, collection, name in (('weight', 'params', 'scale'), ('bias', 'params', 'bias'),
                                         ('running_mean', 'batch_stats', 'mean'),
                                         ('running_var', 'batch_stats', 'var')):
        key = f'{prefix}.{torch_name}'
        if key in state:
            _put(out[collection], f'{target}/{name}', state[key])
            used.add(key)
    return used


def _linear(state: dict, prefix: str, target: str, out: dict, kernel=_dense) -> set[str]:
    used = set()
    if f'{prefix}.weight' in state:
        _put(out['params'], f'{target}/kernel', kernel(state[f'{prefix}.weight']))
        used.add(f'{prefix}.weight')
    if f'{prefix}.bias' in state:
        _put(out['params'], f'{target}/bias', state[f'{prefix}.bias'])
        used.add(f'{prefix}.bias')
    return used


def resnet_variables(state: dict[str, np.ndarray], backbone) -> tuple[dict, list[str]]:
    """torchvision/timm ResNet names -> ({'params', 'batch_stats'} in jaxdl.models.resnet's layout, unmapped names).

    jaxdl numbers its residual blocks through all stages (ResidualBlock_0, _1, ...) and, inside a block, its
    convolutions and BatchNorms in order of use; the shortcut's projection comes last."""
    del backbone  # every shape is in the file
    out, used = {'params': {}, 'batch_stats': {}}, set()
    used |= _linear(state, 'conv1', 'backbone/Conv_0', out, kernel=_conv)
    used |= _batch_norm(state, 'bn1', 'backbone/BatchNorm_0', out)
    blocks = sorted({(int(m[1]), int(m[2])) for k in state if (m := re.match(r'layer(\d+)\.(\d+)\.', k))})
    for index, (stage, block) in enumerate(blocks):
        prefix, target = f'layer{stage}.{block}', f'backbone/ResidualBlock_{index}'
        convs = sorted(int(m[1]) for k in state if (m := re.fullmatch(rf'{re.escape(prefix)}\.conv(\d+)\.weight', k)))
        for position, number in enumerate(convs):
            used |= _linear(state, f'{prefix}.conv{number}', f'{target}/Conv_{position}', out, kernel=_conv)
            used |= _batch_norm(state, f'{prefix}.bn{number}', f'{target}/BatchNorm_{position}', out)
        used |= _linear(state, f'{prefix}.downsample.0', f'{target}/Conv_{len(convs)}', out, kernel=_conv)
        used |= _batch_norm(state, f'{prefix}.downsample.1', f'{target}/BatchNorm_{len(convs)}', out)
    used |= _linear(state, 'fc', 'head/Dense_0', out)
    return out, [k for k in state if k not in used]


def vit_variables(state: dict[str, np.ndarray], backbone) -> tuple[dict, list[str]]:
    """timm VisionTransformer names -> ({'params'} in jaxdl.models.vit's layout, unmapped names). The number of
    heads splits the fused qkv projection; the file does not hold it, the jaxdl model (`backbone.heads`) does."""
    out, used = {'params': {}, 'batch_stats': {}}, set()
    for key, target in (('cls_token', 'backbone/cls'), ('pos_embed', 'backbone/position_embedding')):
        if key in state:
            _put(out['params'], target, state[key])
            used.add(key)
    used |= _linear(state, 'patch_embed.proj', 'backbone/patch_embedding', out, kernel=_conv)
    blocks = sorted({int(m[1]) for k in state if (m := re.match(r'blocks\.(\d+)\.', k))})
    for i in blocks:
        prefix, target = f'blocks.{i}', f'backbone/block_{i}'
        for norm in ('norm1', 'norm2'):
            used |= _layer_norm(state, f'{prefix}.{norm}', f'{target}/{norm}', out)
        for fc in ('fc1', 'fc2'):
            used |= _linear(state, f'{prefix}.mlp.{fc}', f'{target}/{fc}', out)
        qkv_w, qkv_b = state.get(f'{prefix}.attn.qkv.weight'), state.get(f'{prefix}.attn.qkv.bias')
        proj_w = state.get(f'{prefix}.attn.proj.weight')
        if qkv_w is not None and qkv_b is not None and proj_w is not None:
            heads = backbone.heads
            if qkv_w.shape[1] % heads == 0 and qkv_w.shape[0] == 3 * qkv_w.shape[1]:
                width = qkv_w.shape[1]
                for j, name in enumerate(('query', 'key', 'value')):
                    rows = slice(j * width, (j + 1) * width)
                    _put(out['params'], f'{target}/attention/{name}/kernel',
                         qkv_w[rows].T.reshape(width, heads, width // heads))
                    _put(out['params'], f'{target}/attention/{name}/bias', qkv_b[rows].reshape(heads, width // heads))
                _put(out['params'], f'{target}/attention/out/kernel', proj_w.T.reshape(heads, width // heads, width))
                _put(out['params'], f'{target}/attention/out/bias', state[f'{prefix}.attn.proj.bias'])
                used |= {f'{prefix}.attn.{p}.{q}' for p in ('qkv', 'proj') for q in ('weight', 'bias')}
    used |= _layer_norm(state, 'norm', 'backbone/norm', out)
    used |= _linear(state, 'head', 'head/Dense_0', out)
    return out, [k for k in state if k not in used]


def _layer_norm(state: dict, prefix: str, target: str, out: dict) -> set[str]:
    used = set()
    for torch_name, name in (('weight', 'scale'), ('bias', 'bias')):
        if f'{prefix}.{torch_name}' in state:
            _put(out['params'], f'{target}/{name}', state[f'{prefix}.{torch_name}'])
            used.add(f'{prefix}.{torch_name}')
    return used


# jaxdl model name -> the mapping from the ecosystem's names onto its layout.
MAPPINGS = {'resnet': resnet_variables, 'vit': vit_variables}


def describe_architecture(state: dict[str, np.ndarray]) -> str:
    """What the file's names look like, for an error message."""
    if 'pos_embed' in state and 'patch_embed.proj.weight' in state:
        width = state['patch_embed.proj.weight'].shape[0]
        blocks = len({k.split('.')[1] for k in state if k.startswith('blocks.')})
        return f'It looks like a timm ViT (width {width}, {blocks} blocks): model.name \'vit\'.'
    if 'layer1.0.conv1.weight' in state:
        bottleneck = 'layer1.0.conv3.weight' in state
        counts = [len({k.split('.')[1] for k in state if k.startswith(f'layer{i}.')}) for i in range(1, 5)]
        return (f'It looks like a ResNet with {"bottleneck" if bottleneck else "basic"} blocks {tuple(counts)} per '
                f'stage: model.name \'resnet\'.')
    return 'It looks like neither a torchvision/timm ResNet nor a timm ViT.'


def to_jaxdl(state: dict[str, np.ndarray], model_name: str, module) -> tuple[dict, list[str]]:
    """({'params': ..., 'model_state': ...} for `module` (a jaxdl BackboneAndHead), the names left unmapped)."""
    if model_name not in MAPPINGS:
        raise TransferError(f"a torchvision/timm weights file maps onto jaxdl's {' or '.join(MAPPINGS)} models, not "
                            f"model.name {model_name!r}; start from a jaxdl checkpoint instead")
    variables, unmapped = MAPPINGS[model_name](state, module.backbone)
    model_state = {'batch_stats': variables['batch_stats']} if variables['batch_stats'] else {}
    return {'params': variables['params'], 'model_state': model_state}, unmapped
