"""`shapes`: seeded, procedurally drawn scenes for semantic segmentation and object detection.

Each 64x64 RGB scene has a textured background (a colour gradient, low-frequency waves and pixel noise) and 1 to 4
objects -- circles, squares and triangles of random size and colour -- that may overlap; a later object covers an
earlier one, but every object keeps at least half of its pixels visible (a scene that would hide more is drawn
again), so every box has something to find. Features follow TFDS's conventions, so the code that reads them also
reads catalog datasets:

    image              uint8 [64, 64, 3]
    segmentation_mask  uint8 [64, 64, 1], the class of each pixel: 0 = background, 1 + object label
    objects/bbox       the whole object's box, normalised (ymin, xmin, ymax, xmax) -- tfds.features.BBoxFeature
    objects/label      0 circle, 1 square, 2 triangle

Splits are independent draws with their own seeds: train 2000, validation 300, test 300 scenes.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from jaxdl.data import checks

SHAPES_SEED = 20260301
SIZE = 64
CLASS_NAMES = ('circle', 'square', 'triangle')
SPLIT_SIZES = {'train': 2000, 'validation': 300, 'test': 300}
MIN_OBJECTS, MAX_OBJECTS = 1, 4
MIN_SIDE, MAX_SIDE = 12, 26  # an object's box side in pixels
MIN_VISIBLE = 0.5  # share of each object's pixels left uncovered by the objects drawn after it
MIN_COLOUR_DISTANCE = 90.0  # RGB distance between an object's colour and the background around it


def _background(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """float [size, size, 3]: a two-colour gradient, a few low-frequency waves and fine noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    a, b = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    direction = rng.uniform(0, 2 * np.pi)
    t = (np.cos(direction) * xx + np.sin(direction) * yy + 1.5) / 3.0
    image = a + (b - a) * t[..., None]
    for _ in range(3):
        fy, fx, phase = rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 2 * np.pi)
        image += rng.uniform(8, 20) * np.sin(2 * np.pi * (fy * yy + fx * xx) + phase)[..., None] * rng.uniform(-1, 1, 3)
    return image + rng.normal(0, 6, image.shape)


def _object_mask(label: int, top: int, left: int, side: int) -> np.ndarray:
    """bool [64, 64]: the pixels of one object whose bounding square is (top, left, side)."""
    from PIL import Image, ImageDraw

    canvas = Image.new('L', (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(canvas)
    right, bottom = left + side - 1, top + side - 1
    if label == 0:
        draw.ellipse((left, top, right, bottom), fill=1)
    elif label == 1:
        draw.rectangle((left, top, right, bottom), fill=1)
    else:
        draw.polygon([((left + right) / 2, top), (right, bottom), (left, bottom)], fill=1)
    return np.asarray(canvas, bool)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    around = background[mask].mean(0)
    for _ in range(100):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - around) >= MIN_COLOUR_DISTANCE:
            return colour
    return 255.0 - around  # a colour always far enough when the draws keep missing


def draw_scene(rng: np.random.Generator) -> dict:
    """One scene as the builder stores it (uint8 image and mask, boxes and labels)."""
    while True:
        background = _background(rng)
        count = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
        labels = rng.integers(0, len(CLASS_NAMES), count)
        masks = []
        for label in labels:
            side = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
            top, left = rng.integers(0, SIZE - side + 1, 2)
            masks.append(_object_mask(int(label), int(top), int(left), side))
        covered_later = [
            np.logical_or.reduce(masks[i + 1 :]) if i + 1 < count else np.zeros_like(masks[0]) for i in range(count)
        ]
        if all((m & ~c).sum() >= MIN_VISIBLE * m.sum() for m, c in zip(masks, covered_later)):
            break
    image = background.copy()
    segmentation = np.zeros((SIZE, SIZE), np.uint8)
    boxes = []
    for label, mask in zip(labels, masks):
        colour = _contrasting_colour(rng, background, mask)
        image[mask] = colour + rng.normal(0, 4, (int(mask.sum()), 3))
        segmentation[mask] = label + 1
        rows, cols = np.nonzero(mask)
        boxes.append([rows.min() / SIZE, cols.min() / SIZE, (rows.max() + 1) / SIZE, (cols.max() + 1) / SIZE])
    return {
        'image': np.clip(np.round(image), 0, 255).astype(np.uint8),
        'segmentation_mask': segmentation[..., None],
        'objects': {'bbox': np.asarray(boxes, np.float32), 'label': labels.astype(np.int64)},
    }


class Shapes(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': '64x64 scenes of 1-4 circles, squares and triangles; splits 2000/300/300.'}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description='Procedurally drawn 64x64 RGB scenes with 1-4 possibly overlapping circles, squares and '
            'triangles on a textured background: per-pixel classes and per-object boxes. Prepared '
            'offline from a fixed seed.',
            features=tfds.features.FeaturesDict(
                {
                    'image': tfds.features.Image(shape=(SIZE, SIZE, 3)),
                    'segmentation_mask': tfds.features.Image(shape=(SIZE, SIZE, 1)),
                    'objects': tfds.features.Sequence(
                        {
                            'bbox': tfds.features.BBoxFeature(),
                            'label': tfds.features.ClassLabel(names=CLASS_NAMES),
                        }
                    ),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {name: self._generate_examples(index, count) for index, (name, count) in enumerate(SPLIT_SIZES.items())}

    def _generate_examples(self, split_index: int, count: int):
        named = [
            (f'{split_index}_{i}', draw_scene(np.random.default_rng([SHAPES_SEED, split_index, i])))
            for i in range(count)
        ]
        checks.check_numpy_examples(
            [(f'shapes example {key}', ex) for key, ex in named],
            mask_classes=len(CLASS_NAMES) + 1,
            box_classes=len(CLASS_NAMES),
        )
        yield from named


BUILDER = Shapes
