"""U-Net (Ronneberger et al. 2015): an encoder that halves the resolution at each level, and heads that decode
back up through its skip connections.

The encoder is the backbone (params under 'backbone'), so a trained encoder transfers between segmentation and
detection runs (or into a new segmentation task) like any other backbone; the decoder belongs to the head.

    UNetEncoder    images [N, H, W, C] -> one feature map per level, [N, H / 2**i, W / 2**i, features[i]]
    PixelHead      decodes to full resolution: [N, H, W, num_outputs] (per-pixel class scores)
    CenterNetHead  decodes to H / output_stride: [N, h, w, num_classes + 4] (object-centre heatmap logits, then box
                   height and width in cells, then the centre's offset inside its cell; see tasks/detection.py)
    PooledHead     reads every level without decoding: [N, num_outputs] (class scores or regression targets) from
                   each level's global average and maximum, so an encoder pretrained for segmentation classifies
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.models.layers.heads import BackboneAndHead, check_head
from jaxdl.models.layers.pooling import max_pool


def _norm(train: bool, freeze: bool, axis_name, dtype):
    batch_statistics = train and not freeze
    return partial(
        nn.BatchNorm,
        use_running_average=not batch_statistics,
        momentum=0.9,
        epsilon=1e-5,
        dtype=dtype,
        axis_name=axis_name if batch_statistics else None,
    )


class ConvBlock(nn.Module):
    """Two 3x3 convolutions, each followed by BatchNorm and ReLU."""

    width: int
    norm: partial

    @nn.compact
    def __call__(self, x):
        for _ in range(2):
            x = nn.relu(self.norm()(nn.Conv(self.width, (3, 3), use_bias=False, dtype=x.dtype)(x)))
        return x


class UNetEncoder(nn.Module):
    features: Sequence[int] = (32, 64, 128, 256)
    dtype: jnp.dtype = jnp.float32
    freeze_batch_norm: bool = False

    @nn.compact
    def __call__(self, x, *, train: bool = False, axis_name=None):
        norm = _norm(train, self.freeze_batch_norm, axis_name, self.dtype)
        x = x.astype(self.dtype)
        levels = []
        for level, width in enumerate(self.features):
            if level:
                x = max_pool(x, 2)
            x = ConvBlock(width, norm)(x)
            levels.append(x)
        return levels


class UNetDecoder(nn.Module):
    """From the deepest level up to `output_level`: 2x transposed convolution, concatenation with the encoder's
    map of that level, a ConvBlock."""

    features: Sequence[int]
    output_level: int
    dtype: jnp.dtype = jnp.float32
    freeze_batch_norm: bool = False

    @nn.compact
    def __call__(self, levels, *, train: bool = False, axis_name=None):
        if len(levels) <= self.output_level:
            raise ValueError(f'the encoder has {len(levels)} levels; decoding to level {self.output_level} needs more')
        norm = _norm(train, self.freeze_batch_norm, axis_name, self.dtype)
        x = levels[-1]
        for level in range(len(levels) - 2, self.output_level - 1, -1):
            skip = levels[level]
            if x.shape[1] * 2 != skip.shape[1] or x.shape[2] * 2 != skip.shape[2]:
                raise ConfigError(
                    f"config key 'dataset.image_size': images of {levels[0].shape[1]}x"
                    f'{levels[0].shape[2]} do not halve evenly {len(levels) - 1} times in the U-Net; '
                    f'use a size divisible by {2 ** (len(levels) - 1)}'
                )
            x = nn.ConvTranspose(self.features[level], (2, 2), strides=(2, 2), dtype=self.dtype)(x)
            x = ConvBlock(self.features[level], norm)(jnp.concatenate([x, skip], axis=-1))
        return x


class PixelHead(nn.Module):
    """Per-pixel scores at full resolution (segmentation)."""

    num_outputs: int
    features: Sequence[int]
    dtype: jnp.dtype = jnp.float32
    freeze_batch_norm: bool = False

    @nn.compact
    def __call__(self, levels, *, train: bool = False, axis_name=None):
        x = UNetDecoder(self.features, 0, self.dtype, self.freeze_batch_norm)(levels, train=train, axis_name=axis_name)
        return nn.Conv(self.num_outputs, (1, 1), dtype=self.dtype)(x).astype(jnp.float32)


# Heatmap logits start at sigmoid^-1(0.01): almost every cell is background, and a uniform 0.5 start would let the
# background's focal loss swamp the first steps (CenterNet, following RetinaNet's prior).
HEATMAP_PRIOR = -math.log((1 - 0.01) / 0.01)


class CenterNetHead(nn.Module):
    """Object centres as a per-class heatmap, plus box size and centre offset, at 1/output_stride resolution
    (Zhou et al. 2019, "Objects as Points")."""

    num_classes: int
    features: Sequence[int]
    output_stride: int = 4
    width: int = 64
    dtype: jnp.dtype = jnp.float32
    freeze_batch_norm: bool = False

    @nn.compact
    def __call__(self, levels, *, train: bool = False, axis_name=None):
        level = int(math.log2(self.output_stride))
        x = UNetDecoder(self.features, level, self.dtype, self.freeze_batch_norm)(
            levels, train=train, axis_name=axis_name
        )

        def branch(outputs, bias_init, name):
            y = nn.relu(nn.Conv(self.width, (3, 3), dtype=self.dtype, name=f'{name}_conv')(x))
            return nn.Conv(outputs, (1, 1), dtype=self.dtype, bias_init=bias_init, name=name)(y)

        heatmap = branch(self.num_classes, nn.initializers.constant(HEATMAP_PRIOR), 'heatmap')
        boxes = branch(4, nn.initializers.zeros, 'box')
        return jnp.concatenate([heatmap, boxes], axis=-1).astype(jnp.float32)


class PooledHead(nn.Module):
    """A dense layer on every level's global average and global maximum, concatenated. Both poolings, and all
    levels: the shallow levels hold the outline's edges, the deep ones its parts, and a maximum keeps a small
    object's response that an average over a mostly empty image would dilute."""

    num_outputs: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, levels, *, train: bool = False, axis_name=None):
        del train, axis_name
        pooled = [p for x in levels for p in (jnp.mean(x, axis=(1, 2)), jnp.max(x, axis=(1, 2)))]
        return nn.Dense(self.num_outputs, dtype=self.dtype)(jnp.concatenate(pooled, axis=-1)).astype(jnp.float32)


def MODEL(
    num_outputs: int,
    *,
    features: Sequence[int] = (32, 64, 128, 256),
    head_width: int = 64,
    dtype=jnp.float32,
    freeze_batch_norm: bool = False,
    head: str = 'pixels',
    output_stride: int = 1,
) -> BackboneAndHead:
    """`model.name='unet'`; `model.options`: features (encoder widths per level; the decoder mirrors them) and
    head_width (channels of the detection head's branches). The head is the task's: per-pixel scores
    (segmentation), a CenterNet heatmap and boxes at 1/output_stride (detection) or, for a vector task
    (classification, regression), a dense layer on the pooled levels."""
    if not features or not all(isinstance(f, int) and f > 0 for f in features):
        raise ConfigError(f"config key 'model.options.features': must be positive integers, got {features!r}")
    if not isinstance(head_width, int) or head_width <= 0:
        raise ConfigError(f"config key 'model.options.head_width': must be a positive integer, got {head_width!r}")
    check_head('unet', 'feature_maps', head)
    features = tuple(features)
    if head == 'centernet' and 2 ** (len(features) - 1) < output_stride:
        raise ConfigError(
            f"config key 'task.options.output_stride': {output_stride} needs an encoder with at least "
            f'{output_stride.bit_length()} levels (model.options.features has {len(features)})'
        )
    decoder = dict(features=features, dtype=dtype, freeze_batch_norm=freeze_batch_norm)
    backbone = UNetEncoder(features, dtype, freeze_batch_norm)
    if head == 'dense':
        return BackboneAndHead(backbone=backbone, head=PooledHead(num_outputs=num_outputs, dtype=dtype))
    if head == 'pixels':
        return BackboneAndHead(backbone=backbone, head=PixelHead(num_outputs=num_outputs, **decoder))
    return BackboneAndHead(
        backbone=backbone,
        head=CenterNetHead(num_classes=num_outputs, output_stride=output_stride, width=head_width, **decoder),
    )
