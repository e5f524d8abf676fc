"""`novel_shapes`: one object per 64x64 image, of five shapes the `shapes` scenes never show, for transfer.

A network pretrained on `shapes` (circles, squares and triangles, segmented) has learned to find an object on a
textured background and trace its outline; classifying these five from a few examples each needs exactly that and
nothing the target data alone could teach in so few images. The backgrounds and colours are drawn as `shapes`
draws them, so the only new thing is the outline:

    image   uint8 [64, 64, 3]
    label   0 star, 1 cross, 2 ring, 3 pentagon, 4 hexagon

Each object has a random size (its circumscribed circle 22 to 52 pixels across), position and rotation. Labels
cycle through the five classes, so every split is balanced and the first n examples of each class are fixed.
Splits are independent draws with their own seeds: train 1000, validation 250, test 500 images.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from jaxdl.data.builders.shapes import SIZE, _background, _contrasting_colour

NOVEL_SHAPES_SEED = 20261201
CLASS_NAMES = ('star', 'cross', 'ring', 'pentagon', 'hexagon')
SPLIT_SIZES = {'train': 1000, 'validation': 250, 'test': 500}
MIN_RADIUS, MAX_RADIUS = 11, 26  # of the circle through the outline's outer points, in pixels


def _polygon(points: int, radius: float, angle: float, centre, inner: float | None = None) -> list:
    """The corners of a regular polygon, or of a star when `inner` (the inner corners' radius) is given."""
    corners = points * (2 if inner else 1)
    out = []
    for k in range(corners):
        r = radius if not inner or k % 2 == 0 else radius * inner
        a = angle + 2 * np.pi * k / corners
        out.append((centre[0] + r * np.cos(a), centre[1] + r * np.sin(a)))
    return out


def _cross(radius: float, angle: float, centre) -> list:
    """A plus sign whose arms are a third of its width, rotated by `angle`."""
    w = radius / np.sqrt(1 + 1 / 9)  # arm half-length, so the outer corners lie on the circle
    t = w / 3
    outline = [
        (t, w),
        (t, t),
        (w, t),
        (w, -t),
        (t, -t),
        (t, -w),
        (-t, -w),
        (-t, -t),
        (-w, -t),
        (-w, t),
        (-t, t),
        (-t, w),
    ]
    c, s = np.cos(angle), np.sin(angle)
    return [(centre[0] + c * x - s * y, centre[1] + s * x + c * y) for x, y in outline]


def object_mask(label: int, radius: float, angle: float, centre, size: int = SIZE) -> np.ndarray:
    """bool [size, size]: the pixels of one object."""
    from PIL import Image, ImageDraw

    canvas = Image.new('L', (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    x, y = centre
    if label == 0:
        draw.polygon(_polygon(5, radius, angle, centre, inner=0.45), fill=1)
    elif label == 1:
        draw.polygon(_cross(radius, angle, centre), fill=1)
    elif label == 2:
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=1)
        hole = radius * 0.55
        draw.ellipse((x - hole, y - hole, x + hole, y + hole), fill=0)
    else:
        draw.polygon(_polygon(5 if label == 3 else 6, radius, angle, centre), fill=1)
    return np.asarray(canvas, bool)


def draw_image(rng: np.random.Generator, label: int) -> dict:
    """One example as the builder stores it."""
    background = _background(rng)
    radius = rng.uniform(MIN_RADIUS, MAX_RADIUS)
    centre = rng.uniform(radius, SIZE - radius, 2)
    mask = object_mask(label, radius, rng.uniform(0, 2 * np.pi), centre)
    image = background.copy()
    colour = _contrasting_colour(rng, background, mask)
    image[mask] = colour + rng.normal(0, 4, (int(mask.sum()), 3))
    return {'image': np.clip(np.round(image), 0, 255).astype(np.uint8), 'label': label}


class NovelShapes(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': '64x64 images of one star, cross, ring, pentagon or hexagon; splits 1000/250/500.'}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description='One procedurally drawn star, cross, ring, pentagon or hexagon per 64x64 RGB image, on the '
            'textured backgrounds of `shapes`: five shapes `shapes` never shows, for transfer learning. '
            'Prepared offline from a fixed seed.',
            features=tfds.features.FeaturesDict(
                {
                    'image': tfds.features.Image(shape=(SIZE, SIZE, 3)),
                    'label': tfds.features.ClassLabel(names=CLASS_NAMES),
                }
            ),
            supervised_keys=('image', 'label'),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {name: self._generate_examples(index, count) for index, (name, count) in enumerate(SPLIT_SIZES.items())}

    def _generate_examples(self, split_index: int, count: int):
        for i in range(count):
            rng = np.random.default_rng([NOVEL_SHAPES_SEED, split_index, i])
            yield f'{split_index}_{i}', draw_image(rng, i % len(CLASS_NAMES))


BUILDER = NovelShapes
