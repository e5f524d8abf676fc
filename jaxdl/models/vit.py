"""Vision Transformer (Dosovitskiy et al. 2021), as big_vision, Scenic and timm build it: a patch embedding, a
class token (or global average pooling), learned position embeddings, pre-LayerNorm encoder blocks, a final
LayerNorm; the backbone ends in one feature vector, the head is a dense layer.

Names and conventions follow timm's `vit_*_patch16_*` closely enough that its weights map one to one (`TORCH_NAMES`):
LayerNorm epsilon 1e-6, exact (erf) GELU, attention scaled by head_dim ** -0.5. A checkpoint trained at another
image size loads through `resize_position_embedding` (jaxdl.transfer calls it for every `position_embedding`).
"""

from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import ConfigError
from jaxdl.models.layers import torch_names
from jaxdl.models.layers.drop_path import check_drop_path, drop_path, drop_path_rates
from jaxdl.models.layers.heads import BackboneAndHead, DenseHead, check_head

# name -> (width, depth, heads, mlp width)
SIZES = {
    'tiny': (192, 12, 3, 768),
    'small': (384, 12, 6, 1536),
    'base': (768, 12, 12, 3072),
    'large': (1024, 24, 16, 4096),
}


class EncoderBlock(nn.Module):
    width: int
    heads: int
    mlp: int
    dropout: float = 0.0
    dtype: Any = jnp.float32
    drop_path: float = 0.0  # this block's stochastic depth rate

    @nn.compact
    def __call__(self, x, *, train: bool):
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name='norm1')(x)
        y = nn.MultiHeadDotProductAttention(num_heads=self.heads, dtype=self.dtype, name='attention')(
            y, y, deterministic=True
        )
        x = x + drop_path(self.drop_path, train, x.ndim)(nn.Dropout(self.dropout, deterministic=not train)(y))
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name='norm2')(x)
        y = nn.Dense(self.mlp, dtype=self.dtype, name='fc1')(y)
        y = nn.Dense(self.width, dtype=self.dtype, name='fc2')(nn.gelu(y, approximate=False))
        return x + drop_path(self.drop_path, train, x.ndim)(nn.Dropout(self.dropout, deterministic=not train)(y))


class ViTEncoder(nn.Module):
    """images [N, H, W, C] -> the pooled feature vector [N, width]."""

    patch: int = 16
    width: int = 192
    depth: int = 12
    heads: int = 3
    mlp: int = 768
    pool: str = 'cls'  # 'cls': the class token; 'gap': the mean of the patch tokens
    dropout: float = 0.0
    dtype: Any = jnp.float32
    drop_path: float = 0.0  # stochastic depth of the last block; block i gets drop_path * i / (depth - 1)

    @nn.compact
    def __call__(self, images, *, train: bool = False, axis_name=None):
        del axis_name  # no statistics across examples
        if images.shape[1] % self.patch or images.shape[2] % self.patch:
            raise ConfigError(
                f"config key 'model.options.patch': images of {images.shape[1]}x{images.shape[2]} do "
                f'not divide into patches of {self.patch}x{self.patch}; set dataset.image_size to a '
                f'multiple of {self.patch}'
            )
        x = nn.Conv(
            self.width,
            (self.patch, self.patch),
            strides=self.patch,
            padding='VALID',
            dtype=self.dtype,
            name='patch_embedding',
        )(images.astype(self.dtype))
        n, h, w, _ = x.shape
        x = x.reshape(n, h * w, self.width)
        if self.pool == 'cls':
            cls = self.param('cls', nn.initializers.zeros, (1, 1, self.width))
            x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, self.width)).astype(x.dtype), x], axis=1)
        position = self.param('position_embedding', nn.initializers.normal(0.02), (1, x.shape[1], self.width))
        x = nn.Dropout(self.dropout, deterministic=not train)(x + position.astype(x.dtype))
        for i in range(self.depth):
            x = EncoderBlock(
                self.width,
                self.heads,
                self.mlp,
                self.dropout,
                self.dtype,
                drop_path_rates(self.drop_path, self.depth)[i],
                name=f'block_{i}',
            )(x, train=train)
        x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name='norm')(x)
        return x[:, 0] if self.pool == 'cls' else jnp.mean(x, axis=1)


def MODEL(
    num_outputs: int,
    *,
    size: str = 'tiny',
    patch: int = 16,
    pool: str = 'cls',
    dropout: float = 0.0,
    width: int | None = None,
    depth: int | None = None,
    heads: int | None = None,
    mlp: int | None = None,
    dtype=jnp.float32,
    head: str = 'dense',
    drop_path: float = 0.0,
) -> BackboneAndHead:
    """`model.name='vit'`; `model.options`: size (tiny, small, base, large), patch (pixels per side of a patch),
    pool ('cls' or 'gap'), dropout, drop_path (stochastic depth of the last block, increasing linearly from 0);
    width, depth, heads, mlp override the size's."""
    if size not in SIZES:
        raise ConfigError(f"config key 'model.options.size': must be one of {', '.join(SIZES)}, got {size!r}")
    default = dict(zip(('width', 'depth', 'heads', 'mlp'), SIZES[size]))
    chosen: dict[str, Any] = {
        k: default[k] if v is None else v
        for k, v in (('width', width), ('depth', depth), ('heads', heads), ('mlp', mlp))
    }
    for key, value in (('patch', patch), *chosen.items()):
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"config key 'model.options.{key}': must be a positive integer, got {value!r}")
    if chosen['width'] % chosen['heads']:
        raise ConfigError(
            f"config key 'model.options.heads': {chosen['heads']} heads do not divide the width {chosen['width']}"
        )
    if pool not in ('cls', 'gap'):
        raise ConfigError(f"config key 'model.options.pool': must be 'cls' or 'gap', got {pool!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"config key 'model.options.dropout': must be in [0, 1), got {dropout!r}")
    check_head('vit', 'vector', head)
    return BackboneAndHead(
        backbone=ViTEncoder(
            patch, pool=pool, dropout=float(dropout), dtype=dtype, drop_path=check_drop_path(drop_path), **chosen
        ),
        head=DenseHead(num_outputs=num_outputs, dtype=dtype),
    )


def LAYER_INDEX(model):
    """path -> (its layer, the number of layers), for layer-wise learning-rate decay (optimizer.layer_decay), as
    BEiT and timm count a ViT's layers: the patch and position embeddings and class token 0, block k k + 1, the
    final norm and the head depth + 1."""
    layers = model.backbone.depth + 2

    def index(path: str) -> tuple[int, int]:
        block = re.match(r'backbone/block_(\d+)/', path)
        if block:
            return int(block[1]) + 1, layers
        if path.startswith('backbone/') and not path.startswith('backbone/norm/'):
            return 0, layers
        return layers - 1, layers

    return index


def _grid_side(patch_tokens: int) -> int | None:
    side = int(round(patch_tokens**0.5))
    return side if side > 0 and side * side == patch_tokens else None


def resize_position_embedding(embedding, tokens: int):
    """A learned position embedding [1, T, D] for a model with `tokens` tokens: the class token's row (if any)
    kept, the square grid of patch rows resized bicubically (as timm and big_vision do when fine-tuning at another
    resolution). Returns None when the two cannot both be read as [class token +] a square grid."""
    embedding = np.asarray(embedding)
    if embedding.ndim != 3 or embedding.shape[0] != 1:
        return None
    source = embedding.shape[1]
    for prefix in (1, 0):  # with a class token, or global-average pooling (no prefix)
        old, new = _grid_side(source - prefix), _grid_side(tokens - prefix)
        if old and new:
            grid = embedding[0, prefix:].reshape(old, old, -1)
            resized = jax.image.resize(grid.astype(np.float32), (new, new, grid.shape[-1]), method='bicubic')
            rows = np.concatenate(
                [embedding[0, :prefix].astype(np.float32), np.asarray(resized).reshape(new * new, -1)]
            )
            return rows[None].astype(embedding.dtype)
    return None


def TORCH_NAMES(state: dict, backbone) -> tuple[dict, list[str]]:
    """timm VisionTransformer names -> ({'params'} in this module's layout, unmapped names). The number of heads
    splits the fused qkv projection into flax's per-head query, key and value kernels; the file does not hold it,
    the jaxdl model (`backbone.heads`) does."""
    out, used = torch_names.empty(), set()
    for key, target in (('cls_token', 'backbone/cls'), ('pos_embed', 'backbone/position_embedding')):
        if key in state:
            torch_names.put(out['params'], target, state[key])
            used.add(key)
    used |= torch_names.linear(
        state, 'patch_embed.proj', 'backbone/patch_embedding', out, kernel=torch_names.conv_kernel
    )
    blocks = sorted({int(m[1]) for k in state if (m := re.match(r'blocks\.(\d+)\.', k))})
    for i in blocks:
        prefix, target = f'blocks.{i}', f'backbone/block_{i}'
        for norm in ('norm1', 'norm2'):
            used |= torch_names.layer_norm(state, f'{prefix}.{norm}', f'{target}/{norm}', out)
        for fc in ('fc1', 'fc2'):
            used |= torch_names.linear(state, f'{prefix}.mlp.{fc}', f'{target}/{fc}', out)
        used |= _attention(state, prefix, target, backbone.heads, out)
    used |= torch_names.layer_norm(state, 'norm', 'backbone/norm', out)
    used |= torch_names.linear(state, 'head', 'head/Dense_0', out)
    return out, [k for k in state if k not in used]


def _attention(state: dict, prefix: str, target: str, heads: int, out: dict) -> set[str]:
    qkv_w, qkv_b = state.get(f'{prefix}.attn.qkv.weight'), state.get(f'{prefix}.attn.qkv.bias')
    proj_w = state.get(f'{prefix}.attn.proj.weight')
    if qkv_w is None or qkv_b is None or proj_w is None:
        return set()
    if qkv_w.shape[1] % heads or qkv_w.shape[0] != 3 * qkv_w.shape[1]:
        return set()
    width, put = qkv_w.shape[1], torch_names.put
    for j, name in enumerate(('query', 'key', 'value')):
        rows = slice(j * width, (j + 1) * width)
        put(out['params'], f'{target}/attention/{name}/kernel', qkv_w[rows].T.reshape(width, heads, width // heads))
        put(out['params'], f'{target}/attention/{name}/bias', qkv_b[rows].reshape(heads, width // heads))
    put(out['params'], f'{target}/attention/out/kernel', proj_w.T.reshape(heads, width // heads, width))
    put(out['params'], f'{target}/attention/out/bias', state[f'{prefix}.attn.proj.bias'])
    return {f'{prefix}.attn.{p}.{q}' for p in ('qkv', 'proj') for q in ('weight', 'bias')}
