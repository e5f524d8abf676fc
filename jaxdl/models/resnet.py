"""ResNet v1.5 family (He et al. 2016) with BatchNorm; `stem='small'` for tiny images (no stride, no pool).

Laid out as torchvision's and timm's ResNets, so their weights map one to one (`TORCH_NAMES`, read by jaxdl.weights): the stride on the
bottleneck's 3x3 convolution, and padding symmetric about the input (k // 2 on each side) rather than XLA's 'SAME',
which pads a strided convolution more at the bottom and right and so samples other pixels."""

import re
from functools import partial

import flax.linen as nn
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.models.layers import torch_names
from jaxdl.models.layers.drop_path import check_drop_path, drop_path, drop_path_rates
from jaxdl.models.layers.heads import BackboneAndHead, DenseHead, check_head
from jaxdl.models.layers.pooling import strided_max_pool

STAGES = {
    10: (1, 1, 1, 1),
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}


def _symmetric(k: int) -> tuple:
    return ((k // 2, k // 2), (k // 2, k // 2))


class ResidualBlock(nn.Module):
    width: int
    strides: int
    bottleneck: bool
    norm: partial
    drop_path: float = 0.0  # this block's stochastic depth rate

    @nn.compact
    def __call__(self, x, train: bool = False):
        def conv(features, kernel, strides=1):
            return nn.Conv(
                features, kernel, strides=strides, padding=_symmetric(kernel[0]), use_bias=False, dtype=x.dtype
            )

        out_width = self.width * 4 if self.bottleneck else self.width
        if self.bottleneck:
            y = nn.relu(self.norm()(conv(self.width, (1, 1))(x)))
            y = nn.relu(self.norm()(conv(self.width, (3, 3), strides=self.strides)(y)))
            y = self.norm(scale_init=nn.initializers.zeros)(conv(out_width, (1, 1))(y))
        else:
            y = nn.relu(self.norm()(conv(self.width, (3, 3), strides=self.strides)(x)))
            y = self.norm(scale_init=nn.initializers.zeros)(conv(self.width, (3, 3))(y))
        if x.shape[-1] != out_width or self.strides != 1:
            x = self.norm()(conv(out_width, (1, 1), strides=self.strides)(x))
        return nn.relu(x + drop_path(self.drop_path, train, y.ndim)(y))


class ResNet(nn.Module):
    depth: int = 18
    width: int = 64
    stem: str = 'imagenet'  # 'imagenet': 7x7/2 conv + 3x3/2 max-pool; 'small': one 3x3/1 conv
    dtype: jnp.dtype = jnp.float32
    # Fine-tuning a frozen backbone: BatchNorm normalises with its running statistics in training too and never
    # updates them (Keras' behaviour for frozen BatchNorm layers), so the backbone computes a fixed function.
    freeze_batch_norm: bool = False
    drop_path: float = 0.0  # stochastic depth of the last block; block i of n gets drop_path * i / (n - 1)

    @nn.compact
    def __call__(self, x, *, train: bool = False, axis_name=None):
        if self.depth not in STAGES:
            raise ValueError(f'ResNet depth {self.depth} is not one of {sorted(STAGES)}')
        if self.stem not in ('imagenet', 'small'):
            raise ValueError(f"ResNet stem {self.stem!r} is not 'imagenet' or 'small'")
        # axis_name: BatchNorm averages its batch statistics across the pmap axis (exact global-batch BN).
        batch_statistics = train and not self.freeze_batch_norm
        norm = partial(
            nn.BatchNorm,
            use_running_average=not batch_statistics,
            momentum=0.9,
            epsilon=1e-5,
            dtype=self.dtype,
            axis_name=axis_name if batch_statistics else None,
        )
        x = x.astype(self.dtype)
        if self.stem == 'imagenet':
            x = nn.relu(
                norm()(
                    nn.Conv(self.width, (7, 7), strides=2, padding=_symmetric(7), use_bias=False, dtype=self.dtype)(x)
                )
            )
            x = strided_max_pool(x, 3, 2, 1)  # nn.max_pool's function; its gradient compiles under deterministic ops
        else:
            x = nn.relu(norm()(nn.Conv(self.width, (3, 3), use_bias=False, dtype=self.dtype)(x)))
        bottleneck = self.depth >= 50
        rates = iter(drop_path_rates(self.drop_path, sum(STAGES[self.depth])))
        for stage, blocks in enumerate(STAGES[self.depth]):
            for block in range(blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                x = ResidualBlock(self.width * 2**stage, strides, bottleneck, norm, next(rates))(x, train)
        return jnp.mean(x, axis=(1, 2))


def MODEL(
    num_outputs: int,
    *,
    depth: int = 18,
    width: int = 64,
    stem: str = 'imagenet',
    dtype=jnp.float32,
    freeze_batch_norm: bool = False,
    head: str = 'dense',
    drop_path: float = 0.0,
) -> BackboneAndHead:
    """`model.name='resnet'`; `model.options`: depth (10, 18, 34, 50, 101, 152), width (of the first stage),
    stem ('imagenet': 7x7/2 conv and max-pool; 'small': one 3x3 conv, for tiny images), drop_path (stochastic
    depth of the last residual block, increasing linearly from 0 at the first)."""
    if depth not in STAGES:
        raise ConfigError(
            f"config key 'model.options.depth': must be one of {', '.join(map(str, STAGES))}, got {depth!r}"
        )
    if not isinstance(width, int) or width <= 0:
        raise ConfigError(f"config key 'model.options.width': must be a positive integer, got {width!r}")
    if stem not in ('imagenet', 'small'):
        raise ConfigError(f"config key 'model.options.stem': must be 'imagenet' or 'small', got {stem!r}")
    check_head('resnet', 'vector', head)
    return BackboneAndHead(
        backbone=ResNet(depth, width, stem, dtype, freeze_batch_norm, check_drop_path(drop_path)),
        head=DenseHead(num_outputs=num_outputs, dtype=dtype),
    )


def TORCH_NAMES(state: dict, backbone) -> tuple[dict, list[str]]:
    """torchvision/timm ResNet names -> ({'params', 'batch_stats'} in this module's layout, unmapped names).

    jaxdl numbers its residual blocks through all stages (ResidualBlock_0, _1, ...) and, inside a block, its
    convolutions and BatchNorms in order of use; the shortcut's projection comes last."""
    del backbone  # every shape is in the file
    out, used = torch_names.empty(), set()
    conv = torch_names.conv_kernel
    used |= torch_names.linear(state, 'conv1', 'backbone/Conv_0', out, kernel=conv)
    used |= torch_names.batch_norm(state, 'bn1', 'backbone/BatchNorm_0', out)
    blocks = sorted({(int(m[1]), int(m[2])) for k in state if (m := re.match(r'layer(\d+)\.(\d+)\.', k))})
    for index, (stage, block) in enumerate(blocks):
        prefix, target = f'layer{stage}.{block}', f'backbone/ResidualBlock_{index}'
        convs = sorted(int(m[1]) for k in state if (m := re.fullmatch(rf'{re.escape(prefix)}\.conv(\d+)\.weight', k)))
        for position, number in enumerate(convs):
            used |= torch_names.linear(state, f'{prefix}.conv{number}', f'{target}/Conv_{position}', out, kernel=conv)
            used |= torch_names.batch_norm(state, f'{prefix}.bn{number}', f'{target}/BatchNorm_{position}', out)
        used |= torch_names.linear(state, f'{prefix}.downsample.0', f'{target}/Conv_{len(convs)}', out, kernel=conv)
        used |= torch_names.batch_norm(state, f'{prefix}.downsample.1', f'{target}/BatchNorm_{len(convs)}', out)
    used |= torch_names.linear(state, 'fc', 'head/Dense_0', out)
    return out, [k for k in state if k not in used]
