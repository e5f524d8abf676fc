"""ImageNet-style training input: decode only the window the random-resized crop keeps.

The random-resized ("Inception") crop draws a window of `scale` of the image's area and an aspect ratio in `ratio`
(TF's `sample_distorted_bounding_box`, the transform of the Inception and ResNet papers and of torchvision's
RandomResizedCrop). For a JPEG, `tf.image.decode_and_crop_jpeg` decodes only the rows and columns of the window
(benchmarks/streaming_input.py measures the pipeline against decoding whole images); other formats are decoded whole and cropped. The window is then resized to the model's input size like every image
(`preprocess.image_to_pixels`). Evaluation's centre crop is `preprocess.center_crop` (`model_input` crops alike for
`jaxdl predict` and exports): it does not depend on a random draw, so it is applied to decoded images on both input
paths.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class RandomResizedCrop:
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def window(self, shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """[y, x, height, width] of a random window of an image of `shape` ([H, W, C])."""
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape,
            bounding_boxes=tf.zeros([1, 0, 4]),
            seed=seed,
            min_object_covered=0.0,
            aspect_ratio_range=self.ratio,
            area_range=self.scale,
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        return tf.stack([begin[0], begin[1], size[0], size[1]])


def decode_window(image_bytes: tf.Tensor, crop, seed: tf.Tensor | None, channels: int) -> tf.Tensor:
    """uint8 [h, w, channels]: the window `crop` chooses of the encoded image, decoded."""

    def jpeg():
        window = crop.window(tf.image.extract_jpeg_shape(image_bytes), seed)
        return tf.image.decode_and_crop_jpeg(image_bytes, window, channels=channels)

    def other():
        image = tf.io.decode_image(image_bytes, channels=channels, expand_animations=False)
        window = crop.window(tf.shape(image), seed)
        return tf.slice(image, [window[0], window[1], 0], [window[2], window[3], channels])

    image = tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)
    return tf.ensure_shape(image, [None, None, channels])
