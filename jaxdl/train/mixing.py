"""Mixup and CutMix inside the jitted train step (`dataset.augment.mixup_alpha`, `cutmix_alpha`,
`mix_switch_prob`, `mix_prob`), as timm's batch mode draws them.

One draw per step for the whole *global* batch, from the step's RNG before any per-device fold: whether to mix
(`mix_prob`), which of the two (`mix_switch_prob` when both are on), lambda ~ Beta(alpha, alpha) and, for CutMix,
one box. Example i of the global batch is mixed with example B-1-i (the batch reversed), so every runner and
process count mixes the same pairs: under jit (one device, or a mesh of global arrays) the reversal is the
global array's; inside a mapped axis (pmap, shard_map) a device's partners are the mirror device's rows,
reversed (one `ppermute`).

The loss of a mixed example is lam * loss(own targets) + (1 - lam) * loss(partner's targets), which equals the
cross-entropy against timm's soft targets lam * smooth(onehot(a)) + (1 - lam) * smooth(onehot(b)), since the
cross-entropy (softmax or sigmoid) is linear in its target. Training metrics count against the dominant label
(the own one when lam >= 0.5). Evaluation never mixes.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

# The mixing draw's stream, apart from the dropout and drop-path draws of the same step's key.
_STREAM = 0x6D6978


@dataclasses.dataclass(frozen=True)
class Mixing:
    """What a train step mixes (static: part of the compiled step). 0 alphas: no mixing."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    switch_prob: float = 0.5  # with both on: the share of mixed batches that CutMix instead of Mixup
    prob: float = 1.0  # the share of batches mixed at all

    @classmethod
    def of(cls, augment_cfg) -> Mixing | None:
        mixing = cls(
            float(augment_cfg.mixup_alpha),
            float(augment_cfg.cutmix_alpha),
            float(augment_cfg.mix_switch_prob),
            float(augment_cfg.mix_prob),
        )
        return mixing if mixing.active else None

    @property
    def active(self) -> bool:
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0


@flax.struct.dataclass
class Draw:
    """One step's mixing: `lam` is each example's own share (1: not mixed; for CutMix, the share of pixels
    outside the box), `cutmix` whether the partner is pasted in a box [y0, y1) x [x0, x1) rather than blended."""

    lam: jax.Array
    cutmix: jax.Array
    box: jax.Array  # int32 [4]: y0, y1, x0, x1


def draw(key, mixing: Mixing, height: int, width: int) -> Draw:
    """The step's draw, the same on every device (`key`: the step's key before any per-device fold)."""
    k_apply, k_switch, k_mixup, k_cutmix, k_y, k_x = jax.random.split(jax.random.fold_in(key, _STREAM), 6)
    beta = lambda k, alpha: jax.random.beta(k, alpha, alpha) if alpha > 0 else jnp.float32(1.0)
    if mixing.mixup_alpha > 0 and mixing.cutmix_alpha > 0:
        use_cutmix = jax.random.uniform(k_switch) < mixing.switch_prob
    else:
        use_cutmix = jnp.asarray(mixing.cutmix_alpha > 0)
    # CutMix's box: sides sqrt(1 - lam) of the image's, centred anywhere, clipped to the image; lam then becomes
    # the share of the image left outside it.
    ratio = jnp.sqrt(1.0 - beta(k_cutmix, mixing.cutmix_alpha))
    cut_h, cut_w = (jnp.floor(height * ratio).astype(jnp.int32), jnp.floor(width * ratio).astype(jnp.int32))
    cy, cx = jax.random.randint(k_y, (), 0, height), jax.random.randint(k_x, (), 0, width)
    y0, y1 = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
    x0, x1 = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
    box_lam = 1.0 - ((y1 - y0) * (x1 - x0)).astype(jnp.float32) / (height * width)
    apply = jax.random.uniform(k_apply) < mixing.prob
    lam = jnp.where(apply, jnp.where(use_cutmix, box_lam, beta(k_mixup, mixing.mixup_alpha)), 1.0)
    return Draw(lam=lam.astype(jnp.float32), cutmix=apply & use_cutmix, box=jnp.stack([y0, y1, x0, x1]))


def partners(x, axis_name=None):
    """Each row's partner, row B-1-i of the global batch: this shard's rows come from the mirror shard."""
    if axis_name:
        n = jax.lax.axis_size(axis_name)
        x = jax.lax.ppermute(x, axis_name, perm=[(i, n - 1 - i) for i in range(n)])
    return jnp.flip(x, 0)


def mix_images(images, partner_images, d: Draw):
    """[B, H, W, C] images mixed with their partners by the draw."""
    height, width = images.shape[1:3]
    rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
    in_box = (rows >= d.box[0]) & (rows < d.box[1]) & (cols >= d.box[2]) & (cols < d.box[3])
    cut = jnp.where(in_box[None, :, :, None], partner_images, images)
    blend = d.lam * images + (1.0 - d.lam) * partner_images
    return jnp.where(d.cutmix, cut, blend).astype(images.dtype)


def mix_batch(batch: dict, key, mixing: Mixing, axis_name=None) -> tuple[dict, dict, jax.Array]:
    """(the batch with mixed images, the partners' targets in the same rows, lam). Every key but 'image' and
    'valid' is a target (the data kinds that mix hold one class or a multi-hot per example)."""
    d = draw(key, mixing, *batch['image'].shape[1:3])
    mixed = {**batch, 'image': mix_images(batch['image'], partners(batch['image'], axis_name), d)}
    partner = {k: v if k in ('image', 'valid') else partners(v, axis_name) for k, v in mixed.items()}
    return mixed, partner, d.lam
