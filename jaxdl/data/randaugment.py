"""RandAugment (Cubuk et al. 2020) in TF ops, drawn statelessly from an example's seed, as timm applies it.

`dataset.augment.randaugment_layers` ops (timm's n; 0 = off) are chosen per example from timm's RandAugment list,
with replacement, each applied with probability 1/2 at `randaugment_magnitude` (timm's m, on its scale of 0-10):

    AutoContrast, Equalize, Invert, Rotate (m/10 * 30 degrees), Posterize (keep int(m/10 * 4) bits),
    Solarize (from int(m/10 * 256)), SolarizeAdd (int(m/10 * 110) below 128), Color, Contrast, Brightness,
    Sharpness (a factor m/10 * 1.8 + 0.1), ShearX, ShearY (m/10 * 0.3), TranslateX, TranslateY (m/10 * 0.45 of
    the side); the geometric ones to either side with equal chance, filling with grey (128).

The ops work on pixel values 0-255 rounded after each op, as PIL's work on uint8 images. The draws come from the
example's seed alone (epoch seed, position in the epoch), so a resumed run reads identical batches, on both input
paths. It moves the image alone: for data kinds whose targets do not move with it (classification, regression,
multi-label).
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

MAX_MAGNITUDE = 10.0
_FILL = 128.0


@dataclasses.dataclass(frozen=True)
class RandAugment:
    layers: int = 0  # ops per image (0 = off)
    magnitude: float = 9.0  # 0-10

    @classmethod
    def of(cls, augment_cfg) -> RandAugment:
        return cls(int(augment_cfg.randaugment_layers), float(augment_cfg.randaugment_magnitude))

    @property
    def active(self) -> bool:
        return self.layers > 0

    def __call__(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """float32 [H, W, C] pixel values 0-255 -> the same, `layers` ops drawn from `seed` (int [2])."""
        level = self.magnitude / MAX_MAGNITUDE
        for layer in range(self.layers):
            op_seed, apply_seed, sign_seed = tf.unstack(
                tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(seed, layer), 3)
            )
            op = tf.random.stateless_uniform([], op_seed, 0, len(OPS), tf.int32)
            sign = tf.where(tf.random.stateless_uniform([], sign_seed) < 0.5, -1.0, 1.0)
            # Every branch sees the same input; tf.switch_case runs the chosen one only.
            branches = [lambda fn=fn, image=image, sign=sign: _uint8_like(fn(image, level, sign)) for _, fn in OPS]
            changed = tf.switch_case(op, branches)
            image = tf.where(tf.random.stateless_uniform([], apply_seed) < 0.5, changed, image)
        return image


def _uint8_like(image: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(tf.round(image), 0.0, 255.0)


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor) -> tf.Tensor:
    """PIL's ImageEnhance: factor 0 gives `degenerate`, 1 the image, beyond 1 extrapolates."""
    return degenerate + factor * (image - degenerate)


def _grey(image: tf.Tensor) -> tf.Tensor:
    """The luminance PIL's 'L' conversion computes (ITU-R 601-2), as many channels as the image."""
    if image.shape[-1] != 3:
        return image
    luminance = tf.tensordot(image, tf.constant([0.299, 0.587, 0.114]), axes=1)[..., None]
    return tf.broadcast_to(luminance, tf.shape(image))


def _transform(image: tf.Tensor, matrix) -> tf.Tensor:
    """Output pixel (x, y) samples the input at (a0 x + a1 y + a2, b0 x + b1 y + b2), bilinearly, grey outside."""
    transform = tf.cast(tf.reshape(tf.stack([*matrix, 0.0, 0.0]), [1, 8]), tf.float32)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform,
        output_shape=tf.shape(image)[:2],
        fill_value=_FILL,
        interpolation='BILINEAR',
        fill_mode='CONSTANT',
    )[0]


def _size(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    shape = tf.cast(tf.shape(image), tf.float32)
    return shape[0], shape[1]


def auto_contrast(image, level, sign):
    low = tf.reduce_min(image, axis=[0, 1])
    high = tf.reduce_max(image, axis=[0, 1])
    # PIL's lookup table, in doubles, truncated
    wide, low64 = tf.cast(image, tf.float64), tf.cast(low, tf.float64)
    scale = 255.0 / tf.maximum(tf.cast(high, tf.float64) - low64, 1.0)
    stretched = tf.cast(tf.floor(wide * scale - low64 * scale), tf.float32)
    return tf.where(high > low, stretched, image)


def equalize(image, level, sign):
    """Each channel's histogram equalised as PIL's ImageOps.equalize does it."""

    def channel(values):
        pixels = tf.cast(values, tf.int32)
        histogram = tf.math.bincount(tf.reshape(pixels, [-1]), minlength=256, maxlength=256)
        used = tf.boolean_mask(histogram, histogram > 0)
        step = (tf.reduce_sum(used) - used[-1]) // 255
        lut = (tf.cumsum(histogram) + step // 2) // tf.maximum(step, 1)
        lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
        return tf.where(step > 0, tf.cast(tf.gather(lut, pixels), tf.float32), values)

    return tf.stack([channel(image[..., c]) for c in range(image.shape[-1])], axis=-1)


def invert(image, level, sign):
    return 255.0 - image


def rotate(image, level, sign):
    angle = sign * level * 30.0 * math.pi / 180.0
    height, width = _size(image)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    cos, sin = tf.cos(angle), tf.sin(angle)
    return _transform(image, [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy])


def posterize(image, level, sign):
    shift = 2.0 ** (8 - int(level * 4))
    return tf.floor(image / shift) * shift


def solarize(image, level, sign):
    return tf.where(image >= float(int(level * 256)), 255.0 - image, image)


def solarize_add(image, level, sign):
    return tf.where(image < 128.0, tf.minimum(image + float(int(level * 110)), 255.0), image)


def _factor(level) -> float:
    return level * 1.8 + 0.1


def color(image, level, sign):
    return _blend(_grey(image), image, _factor(level))


def contrast(image, level, sign):
    mean = tf.round(tf.reduce_mean(_grey(image)[..., :1]))
    return _blend(mean, image, _factor(level))


def brightness(image, level, sign):
    return _blend(tf.zeros_like(image), image, _factor(level))


def sharpness(image, level, sign):
    """Blended with PIL's SMOOTH filter of it (3 x 3, centre weight 5), the border pixels left alone."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    channels = image.shape[-1]
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    smooth = tf.round(tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], 'VALID')[0])
    smooth = tf.pad(smooth - image[1:-1, 1:-1], [[1, 1], [1, 1], [0, 0]]) + image
    return _blend(smooth, image, _factor(level))


def shear_x(image, level, sign):
    return _transform(image, [1.0, sign * level * 0.3, 0.0, 0.0, 1.0, 0.0])


def shear_y(image, level, sign):
    return _transform(image, [1.0, 0.0, 0.0, sign * level * 0.3, 1.0, 0.0])


def translate_x(image, level, sign):
    _, width = _size(image)
    return _transform(image, [1.0, 0.0, sign * level * 0.45 * width, 0.0, 1.0, 0.0])


def translate_y(image, level, sign):
    height, _ = _size(image)
    return _transform(image, [1.0, 0.0, 0.0, 0.0, 1.0, sign * level * 0.45 * height])


OPS = (
    ('AutoContrast', auto_contrast),
    ('Equalize', equalize),
    ('Invert', invert),
    ('Rotate', rotate),
    ('Posterize', posterize),
    ('Solarize', solarize),
    ('SolarizeAdd', solarize_add),
    ('Color', color),
    ('Contrast', contrast),
    ('Brightness', brightness),
    ('Sharpness', sharpness),
    ('ShearX', shear_x),
    ('ShearY', shear_y),
    ('TranslateX', translate_x),
    ('TranslateY', translate_y),
)
