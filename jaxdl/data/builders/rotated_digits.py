"""`rotated_digits`: the `digits` images on a 28x28 canvas, each rotated by a seeded random angle (regression).

Every 8x8 digit is upscaled to 16x16 (so a 45-degree turn never clips it), centred on a black 28x28 canvas and
rotated counter-clockwise by `angle` degrees, drawn uniformly from [-45, 45]. Rotating the image by -angle
straightens it. The splits are the digits' own (no source image in two splits); the training split holds several
rotated copies of each of its images, each with its own angle.
"""

import numpy as np
import tensorflow_datasets as tfds

from jaxdl.data.builders.digits import load_digit_images, split_indices

ANGLE_SEED = 20260202
MAX_ANGLE = 45.0
CANVAS, DIGIT = 28, 16
# Rotated copies of each source image per split: more distinct angles to learn from in training.
COPIES = {'train': 8, 'validation': 2, 'test': 2}


def rotated_digit(image_8x8: np.ndarray, angle: float) -> np.ndarray:
    """uint8 [8, 8] -> uint8 [28, 28], the digit centred and turned `angle` degrees counter-clockwise."""
    from PIL import Image

    digit = Image.fromarray(image_8x8).resize((DIGIT, DIGIT), Image.Resampling.BILINEAR)
    canvas = Image.new('L', (CANVAS, CANVAS), 0)
    offset = (CANVAS - DIGIT) // 2
    canvas.paste(digit, (offset, offset))
    return np.asarray(canvas.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0), np.uint8)


def angle_of(index: int, copy: int) -> float:
    return float(np.random.default_rng([ANGLE_SEED, index, copy]).uniform(-MAX_ANGLE, MAX_ANGLE))


class RotatedDigits(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'digits on 28x28, rotated in [-45, 45] degrees; copies per split 8/2/2.'}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description='The 8x8 scikit-learn digits, upscaled to 16x16 on a 28x28 canvas and rotated by a seeded '
            'random angle in [-45, 45] degrees (counter-clockwise positive). Prepared offline.',
            features=tfds.features.FeaturesDict(
                {
                    'image': tfds.features.Image(shape=(CANVAS, CANVAS, 1)),
                    'angle': tfds.features.Scalar(dtype=np.float32, doc='degrees counter-clockwise'),
                    'label': tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=('image', 'angle'),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: scikit-learn ships the data
        images, labels = load_digit_images()
        return {
            name: self._generate_examples(images, labels, idx, COPIES[name])
            for name, idx in split_indices(len(labels)).items()
        }

    def _generate_examples(self, images, labels, indices, copies):
        for i in indices:
            for copy in range(copies):
                angle = angle_of(int(i), copy)
                yield (
                    f'{int(i)}_{copy}',
                    {
                        'image': rotated_digit(images[i], angle)[..., None],
                        'angle': np.float32(angle),
                        'label': int(labels[i]),
                    },
                )


BUILDER = RotatedDigits
