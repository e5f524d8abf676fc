"""Images as the model takes them, computed by jax alone: what an exported model does to the uint8 images a
client sends, with no TensorFlow in the process.

`preprocess.image_to_float` is its TensorFlow twin, run per example in the input pipeline; both read one
`ImageFormat` and give the same floats (tests/test_export.py holds them together).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


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
    """uint8 [N, H, W, C] -> normalised float32 [N, S, S, C] (S = the format's size, or the images' own size).

    N may be a symbolic dimension (an export for any batch size)."""
    height, width = images.shape[1], images.shape[2]
    top, left, side = image_format.crop_box(height, width)
    if side:
        images = images[:, top : top + side, left : left + side]
        height = width = side
    x = images.astype(jnp.float32) / 255.0
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
    mean = jnp.asarray(image_format.mean, jnp.float32)
    std = jnp.asarray(image_format.std, jnp.float32)
    return (x - mean) / std
