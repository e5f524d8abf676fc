"""Images as the model takes them, computed by jax alone, with no TensorFlow in the process.

`Normalization` is the one place pixels become model inputs: the train, eval and predict steps apply it on the
device to the uint8 batches both input paths hand over (4x fewer bytes host to device than float32), and an
exported model applies it behind `model_input`'s crop and resize. `preprocess.image_to_pixels` is the input
pipeline's TensorFlow half (crop, resize, back to uint8), and `preprocess.image_to_float` the whole of it in TF
(for datasets whose images are not 8-bit, which travel as float32); tests/test_export.py holds the twins together.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Normalization:
    """uint8 pixels -> model inputs: scaled to [0, 1], then (x - mean) / std per channel (one value, or one per
    channel). Images of any other dtype are model inputs already (a dataset whose images are not 8-bit is
    normalised by its input pipeline, in float32) and pass unchanged. The default scales to [0, 1] alone."""

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __call__(self, images: jax.Array) -> jax.Array:
        if images.dtype != jnp.uint8:
            return images
        return self.of_pixel_values(images.astype(jnp.float32))

    def of_pixel_values(self, pixels: jax.Array) -> jax.Array:
        """float pixel values 0-255 -> model inputs (the same operations, in the same order, as the TF
        pipeline's `image_to_float`)."""
        mean = jnp.asarray(self.mean, jnp.float32)
        std = jnp.asarray(self.std, jnp.float32)
        return (pixels / 255.0 - mean) / std

    @property
    def zero_pixel(self) -> tuple[float, ...]:
        """The pixel value (0-255, per channel, or one for all) that normalises to 0: what augmentation fills the
        outside of a moved image with, as it filled normalised images with 0."""
        return tuple(float(v) * 255.0 for v in self.mean)


@dataclasses.dataclass(frozen=True)
class ImageFormat:
    """How images become model inputs: the central square of `center_crop` of the shorter side kept (0 keeps the
    whole image), resized to `size` x `size` (0 keeps their size; `antialias` filters a reduction), scaled to
    [0, 1] and normalised per channel by `mean` and `std` (one value, or one per channel)."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    center_crop: float = 0.0
    antialias: bool = True

    @property
    def normalization(self) -> Normalization:
        return Normalization(self.mean, self.std)

    @classmethod
    def of(cls, dataset_cfg) -> ImageFormat:
        # The ImageNet-style transforms resample as TF's and big_vision's ImageNet input do (bilinear, no
        # antialiasing filter): the filtered resize took 3.7x the time of the whole JPEG decode per image
        # (benchmarks/README.md), and training and evaluation must resample alike.
        imagenet_style = bool(dataset_cfg.augment.random_resized_crop or dataset_cfg.center_crop)
        return cls(
            int(dataset_cfg.image_size),
            tuple(float(v) for v in dataset_cfg.mean),
            tuple(float(v) for v in dataset_cfg.std),
            float(dataset_cfg.center_crop),
            not imagenet_style,
        )

    def crop_box(self, height: int, width: int) -> tuple[int, int, int]:
        """(top, left, side) of the centre crop of a height x width image; the whole image without one. The side
        is computed in float32, as the TensorFlow pipeline computes it."""
        if not self.center_crop:
            return 0, 0, 0
        side = max(int(np.float32(self.center_crop) * np.float32(min(height, width))), 1)
        return (height - side) // 2, (width - side) // 2, side


def model_input(images: jax.Array, image_format: ImageFormat) -> jax.Array:
    """uint8 [N, H, W, C] -> normalised float32 [N, S, S, C] (S = the format's size, or the images' own size):
    the centre crop and resize of the input pipeline, then its `Normalization`, in jax.

    N may be a symbolic dimension (an export for any batch size)."""
    height, width = images.shape[1], images.shape[2]
    top, left, side = image_format.crop_box(height, width)
    if side:
        images = images[:, top : top + side, left : left + side]
        height = width = side
    x = images.astype(jnp.float32)
    size = image_format.size
    if size and (height, width) != (size, size):  # a resize to the same size is the identity in TF too
        # jax.image.resize's own computation, over the two spatial axes only: the batch, symbolic or not, is
        # left alone, and the weights are plain matrix products every export converter knows
        x = jax.image.scale_and_translate(
            x,
            (x.shape[0], size, size, x.shape[-1]),
            (1, 2),
            jnp.asarray([size / height, size / width], jnp.float32),
            jnp.zeros(2, jnp.float32),
            'linear',
            antialias=image_format.antialias,
        )
    return image_format.normalization.of_pixel_values(x)


def resize_windows(canvases: jax.Array, windows: jax.Array, flips: jax.Array | None = None) -> jax.Array:
    """uint8 [N, S, S, C] canvases, each holding an image of windows[n] = (height, width) <= (S, S) pixels in its
    top-left corner -> float32 pixel values [N, S, S, C]: each image resized to S x S as TF's bilinear resize does
    it (half-pixel centres, edges clamped, no antialiasing filter). The random-resized crop's resize, on the
    device: the host only decodes each crop (`preprocess.fit_within`) and tf.data's padded batch puts it in its
    canvas, so the model-sized image is never made on the host. `flips` (bool [N]) mirror their images left to
    right: the resize of the mirrored image, as its half-pixel sampling is symmetric (the columns' weights read
    backwards)."""
    size = canvases.shape[1]

    def weights(extent: jax.Array) -> jax.Array:  # [N] pixels -> [N, S out, S in] interpolation weights
        source = (jnp.arange(size, dtype=jnp.float32)[None] + 0.5) * (extent.astype(jnp.float32) / size)[:, None] - 0.5
        below = jnp.floor(source)
        frac = (source - below)[..., None]
        last = (extent - 1)[:, None]
        lower = jnp.clip(below.astype(jnp.int32), 0, last)
        upper = jnp.clip(below.astype(jnp.int32) + 1, 0, last)
        return (1.0 - frac) * jax.nn.one_hot(lower, size) + frac * jax.nn.one_hot(upper, size)

    rows, columns = weights(windows[:, 0]), weights(windows[:, 1])
    if flips is not None:
        columns = jnp.where(flips[:, None, None], columns[:, ::-1], columns)
    pixels = canvases.astype(jnp.float32)
    return jnp.einsum('nij,njkc,nlk->nilc', rows, pixels, columns, precision=jax.lax.Precision.HIGHEST)
