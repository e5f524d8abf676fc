"""What every data kind shares: images to the pixels a batch carries, and the random draws of per-example
augmentation.

Everything here is a tf function of one example. A dataset of 8-bit images hands uint8 pixels at the model's size
to the device (`image_to_pixels`: the crop and resize only), where the steps normalise them
(`model_input.Normalization`); a dataset of other images is normalised here, in float32 (`image_to_float`). The
augmentations keep the dtype they are given. Each data kind (`jaxdl.data.kinds`) converts its targets and moves
them with a `Placement`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf

from jaxdl.data.model_input import ImageFormat


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Per-example random augmentation of training images (dataset.augment)."""

    flip_left_right: bool = False
    crop_padding: int = 0  # random translation: pad by n pixels, crop back
    crop_area: float = 1.0  # segmentation, detection: a random crop of [crop_area, 1] of the image, resized back
    # What the outside of a moved image is filled with, per channel (or one for all), in the images' own units:
    # the pixel value that normalises to 0 (uint8 pixels), or 0 (images normalised on the host).
    fill: tuple[float, ...] = (0.0,)

    @classmethod
    def of(cls, augment_cfg, fill: tuple[float, ...] = (0.0,)) -> Augmentation:
        return cls(bool(augment_cfg.flip_left_right), int(augment_cfg.crop_padding), float(augment_cfg.crop_area), fill)

    @property
    def active(self) -> bool:
        return self.flip_left_right or self.crop_padding > 0 or self.crop_area < 1.0

    @property
    def flip_only(self) -> bool:
        return self.flip_left_right and self.crop_padding == 0 and self.crop_area == 1.0


def center_crop(image: tf.Tensor, fraction: float) -> tf.Tensor:
    """The central square of `fraction` of the shorter side (the evaluation crop of ImageNet models: 0.875)."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.maximum(tf.cast(fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32), 1)
    return tf.image.crop_to_bounding_box(image, (height - side) // 2, (width - side) // 2, side, side)


def image_to_float(image: tf.Tensor, image_format: ImageFormat) -> tf.Tensor:
    """[H, W, C] -> normalised float32 [S, S, C] (S = the format's size, or the image's own size): uint8 pixels
    scaled to [0, 1] first, images of any other dtype taken in their own units."""
    if image_format.center_crop:
        image = center_crop(image, image_format.center_crop)
    image = tf.cast(image, tf.float32) / 255.0 if image.dtype == tf.uint8 else tf.cast(image, tf.float32)
    if image_format.size:
        image = tf.image.resize(
            image, (image_format.size, image_format.size), method='bilinear', antialias=image_format.antialias
        )
    mean = tf.constant(image_format.mean, tf.float32)
    std = tf.constant(image_format.std, tf.float32)
    return (image - mean) / std


def image_to_pixels(image: tf.Tensor, image_format: ImageFormat) -> tf.Tensor:
    """uint8 [H, W, C] -> uint8 [S, S, C]: `image_to_float`'s crop and resize, rounded back to pixels; the steps
    apply the rest (`model_input.Normalization`). An image already of the format's size is passed through as it
    is (TF's resize to the same size is the identity)."""
    if image_format.center_crop:
        image = center_crop(image, image_format.center_crop)
    if not image_format.size:
        return image
    size = (image_format.size, image_format.size)
    if image.shape[0] == size[0] and image.shape[1] == size[1]:
        return image
    resized = tf.image.resize(image, size, method='bilinear', antialias=image_format.antialias)
    return to_dtype_of(resized, image)


def fit_within(image: tf.Tensor, size: int, antialias: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """uint8 [h, w, C] -> (uint8 [min(h, size), min(w, size), C], int32 [2] that extent): a side longer than `size`
    resized down to it (rounded back to pixels), a shorter one as it is. Batched into the corner of a size x size
    canvas (tf.data's padded batch: one copy), it is resized to size x size by the steps, on the device
    (`model_input.resize_windows`); bilinear resizing is separable, so the two halves make the one resize of
    before, but for rounding to pixels between them."""
    extent = tf.shape(image)[:2]
    fitted = tf.minimum(extent, size)
    image = tf.cond(
        tf.reduce_any(extent > size),
        lambda: to_dtype_of(tf.image.resize(image, fitted, method='bilinear', antialias=antialias), image),
        lambda: image,
    )
    return image, fitted


def to_dtype_of(values: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Float values back in `like`'s dtype: pixel values rounded and clipped to 0-255 for uint8."""
    if like.dtype == tf.uint8:
        return tf.cast(tf.clip_by_value(tf.round(values), 0.0, 255.0), tf.uint8)
    return tf.cast(values, like.dtype)


def _filled(image: tf.Tensor, fill: tuple[float, ...], move: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """`move` (which fills with zeros) applied to the image less the fill colour, the fill colour added back: the
    outside becomes `fill`, in the image's dtype."""
    colour = tf.constant(fill, tf.float32)
    return to_dtype_of(move(tf.cast(image, tf.float32) - colour) + colour, image)


def augment_image(example: dict, seed: tf.Tensor, augment: Augmentation, ignore_label: int = 0) -> dict:
    """Random flip and translation of the image alone (classification, regression), drawn from `seed` alone
    (stateless), so a resumed epoch redraws the same."""
    del ignore_label
    image = example['image']
    crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))[1]
    if augment.flip_left_right:
        image = tf.cond(flip_draw(seed), lambda: tf.reverse(image, [1]), lambda: image)
    if augment.crop_padding:
        pad, shape = augment.crop_padding, tf.shape(image)
        translate = lambda x: tf.image.stateless_random_crop(
            tf.pad(x, [[pad, pad], [pad, pad], [0, 0]]), shape, crop_seed
        )
        image = _filled(image, augment.fill, translate)
    return {**example, 'image': image}


def flip_draw(seed: tf.Tensor) -> tf.Tensor:
    """bool []: whether `augment_image` mirrors the image it draws from `seed` (`stateless_random_flip_left_right`'s
    own draw). The stream's random-resized crop sends it with the crop ('image_flip'), and the steps mirror the
    resized image (`model_input.resize_windows`), as bilinear resizing commutes with a mirror."""
    flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))[0]
    return tf.random.stateless_uniform([], flip_seed) < 0.5


def _window(seed, size, augment: Augmentation):
    """A random sampling window per axis: (start, step) in source pixel centres, so output pixel i samples the
    source at start + i * step. It zooms in on a crop of [crop_area, 1] of the image area (step < 1) and shifts by
    up to crop_padding pixels (the outside is padding)."""
    area_seed, y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    scale = tf.sqrt(tf.random.stateless_uniform([], area_seed, augment.crop_area, 1.0))
    size = tf.cast(size, tf.float32)
    pad = float(augment.crop_padding)
    room = (size - 1) * (1 - scale)  # how far a crop of this scale can move inside the image
    start = lambda axis_seed, n: tf.random.stateless_uniform([], axis_seed, -pad, room[n] + pad)
    return tf.stack([start(y_seed, 0), start(x_seed, 1)]), scale


@dataclasses.dataclass(frozen=True)
class Placement:
    """One random draw of where an augmented image samples its source: a mirror (flip_left_right), then a window
    that zooms in on [crop_area, 1] of the image and shifts by up to crop_padding pixels (the outside is padding).
    The image, its mask, boxes and points all go through the same draw, so they stay aligned."""

    flip: tf.Tensor | None  # bool []; None: no mirror drawn
    start: tf.Tensor | None  # float32 [2]: the window's first sample, in source pixel centres; None: no window
    step: tf.Tensor | None  # float32 []: source pixels per output pixel
    size: tf.Tensor  # float32 [2]: the image's height and width
    fill: tuple[float, ...] = (0.0,)  # the image's outside (Augmentation.fill)

    @classmethod
    def draw(cls, seed: tf.Tensor, image: tf.Tensor, augment: Augmentation) -> Placement:
        flip_seed, window_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        flip = tf.random.stateless_uniform([], flip_seed) < 0.5 if augment.flip_left_right else None
        hw = tf.shape(image)[:2]
        start = step = None
        if augment.crop_area < 1.0 or augment.crop_padding:
            start, step = _window(window_seed, hw, augment)
        return cls(flip, start, step, tf.cast(hw, tf.float32), augment.fill)

    def _resample(self, x: tf.Tensor, method: str, fill: float) -> tf.Tensor:
        # crop_and_resize's box: (y1, x1, y2, x2) with the source pixel-centre coordinate p = y1 * (H - 1) + ...
        end = self.start + self.step * (self.size - 1)
        box = tf.concat([self.start / (self.size - 1), end / (self.size - 1)], 0)[None]
        return tf.image.crop_and_resize(
            tf.cast(x, tf.float32)[None],
            box,
            [0],
            tf.cast(self.size, tf.int32),
            method=method,
            extrapolation_value=fill,
        )[0]

    def image(self, image: tf.Tensor) -> tf.Tensor:
        """[H, W, C], resampled bilinearly (the augmentation's fill outside the source), in its own dtype."""
        if self.flip is not None:
            image = tf.where(self.flip, tf.reverse(image, [1]), image)
        if self.start is None:
            return image
        return _filled(image, self.fill, lambda x: self._resample(x, 'bilinear', 0.0))

    def mask(self, mask: tf.Tensor, fill: int) -> tf.Tensor:
        """int32 [H, W] class ids, by nearest neighbour (`fill` where the window leaves the source)."""
        if self.flip is not None:
            mask = tf.where(self.flip, tf.reverse(mask, [1]), mask)
        if self.start is None:
            return mask
        return tf.cast(self._resample(mask[..., None], 'nearest', float(fill))[..., 0], tf.int32)

    def _to_output(self, edges: tf.Tensor, axes: tf.Tensor) -> tf.Tensor:
        # A normalised coordinate e is at source pixel-centre coordinate e * size - 0.5; the output coordinate is
        # (that - start) / step, and back to a normalised coordinate.
        size, start = tf.gather(self.size, axes), tf.gather(self.start, axes)
        return ((edges * size - 0.5 - start) / self.step + 0.5) / size

    def boxes(self, boxes: tf.Tensor, valid: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Normalised (ymin, xmin, ymax, xmax) [M, 4] and which are objects [M]: edges through the same map,
        clipped to the image; a box with less than half of itself left inside is no longer valid."""
        if self.flip is not None:
            mirrored = tf.stack([boxes[:, 0], 1.0 - boxes[:, 3], boxes[:, 2], 1.0 - boxes[:, 1]], axis=-1)
            boxes = tf.where(self.flip, mirrored, boxes)
        if self.start is None:
            return boxes, valid
        moved = self._to_output(boxes, tf.constant([0, 1, 0, 1]))
        clipped = tf.clip_by_value(moved, 0.0, 1.0)
        area = lambda x: tf.maximum(x[:, 2] - x[:, 0], 0.0) * tf.maximum(x[:, 3] - x[:, 1], 0.0)
        valid = valid & (area(clipped) >= 0.5 * area(moved)) & (area(clipped) > 0)
        return tf.where(valid[:, None], clipped, 0.0), valid

    def points(self, points: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Normalised (y, x) [K, 2] through the same map, and whether each is still inside the image [K]."""
        if self.flip is not None:
            points = tf.where(self.flip, tf.stack([points[:, 0], 1.0 - points[:, 1]], axis=-1), points)
        if self.start is not None:
            points = self._to_output(points, tf.constant([0, 1]))
        return points, tf.reduce_all((points >= 0.0) & (points <= 1.0), axis=-1)
