"""`digits`: scikit-learn's bundled 8x8 handwritten digits (1,797 real images, 10 classes), no network needed."""

import numpy as np
import tensorflow_datasets as tfds

# Fixed, seeded split of the 1,797 images: 70% train, 10% validation, 20% test. Changing these changes the data.
SPLIT_SEED = 20260101
SPLIT_FRACTIONS = {'train': 0.7, 'validation': 0.1, 'test': 0.2}


def split_indices(num_examples: int, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Disjoint, seeded index sets covering every example once."""
    order = np.random.default_rng(seed).permutation(num_examples)
    n_train = int(round(SPLIT_FRACTIONS['train'] * num_examples))
    n_val = int(round(SPLIT_FRACTIONS['validation'] * num_examples))
    return {
        'train': np.sort(order[:n_train]),
        'validation': np.sort(order[n_train : n_train + n_val]),
        'test': np.sort(order[n_train + n_val :]),
    }


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as uint8 [N, 8, 8] images (pixel values 0..16 rescaled to 0..255) and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.round(digits.images * (255.0 / 16.0)).astype(np.uint8), digits.target.astype(np.int64)


class Digits(tfds.core.GeneratorBasedBuilder):
    """UCI/scikit-learn optical digits, 8x8 grayscale, pixel values rescaled from 0..16 to 0..255."""

    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'Seeded 70/10/20 train/validation/test split.'}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description='8x8 handwritten digits bundled with scikit-learn (prepared offline).',
            features=tfds.features.FeaturesDict(
                {
                    'image': tfds.features.Image(shape=(8, 8, 1)),
                    'label': tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=('image', 'label'),
            homepage='https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset',
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: scikit-learn ships the data
        images, labels = load_digit_images()
        return {
            name: self._generate_examples(images[..., None], labels, idx)
            for name, idx in split_indices(len(labels)).items()
        }

    def _generate_examples(self, images, labels, indices):
        for i in indices:
            yield int(i), {'image': images[i], 'label': int(labels[i])}


BUILDER = Digits
