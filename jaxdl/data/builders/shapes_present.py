"""`shapes_present`: which kinds of shape a scene holds, for multi-label classification.

The scenes of `shapes` (64x64, 1 to 4 possibly overlapping circles, squares and triangles on a textured
background), drawn from seeds of their own, labelled with the set of classes present (TFDS's convention for
multi-label data, as voc's `labels`):

    image   uint8 [64, 64, 3]
    labels  Sequence(ClassLabel): 0 circle, 1 square, 2 triangle, each present class once, in class order

Splits are independent draws: train 3000, validation 500, test 500 scenes.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from jaxdl.data.builders.shapes import CLASS_NAMES, SIZE, draw_scene

SEED = 20261205
SPLIT_SIZES = {'train': 3000, 'validation': 500, 'test': 500}


class ShapesPresent(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'The classes present in 64x64 shapes scenes; splits 3000/500/500.'}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description='Procedurally drawn 64x64 RGB scenes of 1-4 circles, squares and triangles (the shapes '
            'dataset), labelled with the set of shape classes present. Prepared offline from a fixed '
            'seed.',
            features=tfds.features.FeaturesDict(
                {
                    'image': tfds.features.Image(shape=(SIZE, SIZE, 3)),
                    'labels': tfds.features.Sequence(tfds.features.ClassLabel(names=CLASS_NAMES)),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {name: self._generate_examples(index, count) for index, (name, count) in enumerate(SPLIT_SIZES.items())}

    def _generate_examples(self, split_index: int, count: int):
        for i in range(count):
            scene = draw_scene(np.random.default_rng([SEED, split_index, i]))
            yield (
                f'{split_index}_{i}',
                {'image': scene['image'], 'labels': np.unique(scene['objects']['label']).astype(np.int64)},
            )


BUILDER = ShapesPresent
