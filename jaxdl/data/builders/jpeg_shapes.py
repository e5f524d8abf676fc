"""`jpeg_shapes`: thousands of JPEG files of varying size, stored for random access: ImageNet's shape, offline.

One star, cross, ring, pentagon or hexagon (the outlines of `novel_shapes`) per RGB image on a `shapes`-style
textured background, each image square with a side drawn from 128 to 224 pixels and stored as the JPEG file it
was encoded to (quality 90), as ImageNet stores its photographs:

    image   JPEG bytes, decoded to uint8 [side, side, 3]
    label   0 star, 1 cross, 2 ring, 3 pentagon, 4 hexagon

Prepared as ArrayRecord files, so the streaming pipeline reads any example by its index without reading the
ones before it. Labels cycle through the five classes. Splits are independent draws with their own seeds:
train 5000, validation 500, test 1000 images (about 60 MB of JPEG, 1.9 GB as decoded float32 at 224 px).
A subclass with other `SPLIT_SIZES` or `SIDES` is the same dataset at another scale (the tests and the
benchmarks use that).
"""

from __future__ import annotations

import io

import numpy as np
import tensorflow_datasets as tfds

from jaxdl.data.builders.novel_shapes import CLASS_NAMES, object_mask
from jaxdl.data.builders.shapes import _background, _contrasting_colour

JPEG_SHAPES_SEED = 20261202
JPEG_QUALITY = 90


def draw_jpeg(rng: np.random.Generator, label: int, sides: tuple[int, int]) -> bytes:
    """One example's image as JPEG bytes: a side in `sides` (inclusive), the object 20-45% of it in radius."""
    from PIL import Image

    side = int(rng.integers(sides[0], sides[1] + 1))
    background = _background(rng, side)
    radius = rng.uniform(0.2, 0.45) * side
    centre = rng.uniform(radius, side - radius, 2)
    mask = object_mask(label, radius, rng.uniform(0, 2 * np.pi), centre, size=side)
    image = background.copy()
    image[mask] = _contrasting_colour(rng, background, mask) + rng.normal(0, 4, (int(mask.sum()), 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8)).save(out, format='JPEG', quality=JPEG_QUALITY)
    return out.getvalue()


class JpegShapes(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'JPEG images 128-224 px of one of five shapes; splits 5000/500/1000; ArrayRecord.'}
    SPLIT_SIZES = {'train': 5000, 'validation': 500, 'test': 1000}
    SIDES = (128, 224)

    def __init__(self, **kwargs):
        # Random access by index is what the streaming pipeline reads; TFDS's default (TFRecord) cannot do it.
        kwargs.setdefault('file_format', 'array_record')
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description='One procedurally drawn star, cross, ring, pentagon or hexagon per JPEG image of 128-224 '
            'pixels a side on a textured background: an offline stand-in for ImageNet-style input. '
            'Prepared offline from a fixed seed.',
            features=tfds.features.FeaturesDict(
                {
                    'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
                    'label': tfds.features.ClassLabel(names=CLASS_NAMES),
                }
            ),
            supervised_keys=('image', 'label'),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {
            name: self._generate_examples(index, count) for index, (name, count) in enumerate(self.SPLIT_SIZES.items())
        }

    def _generate_examples(self, split_index: int, count: int):
        for i in range(count):
            rng = np.random.default_rng([JPEG_SHAPES_SEED, split_index, i])
            yield (
                f'{split_index}_{i}',
                {'image': io.BytesIO(draw_jpeg(rng, i % len(CLASS_NAMES), self.SIDES)), 'label': i % len(CLASS_NAMES)},
            )


BUILDER = JpegShapes
