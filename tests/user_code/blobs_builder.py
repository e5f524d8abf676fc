"""A researcher's own TFDS builder, named by import path (`dataset.name='blobs_builder:Blobs'`): 16x16 grey
images of one bright blob, labelled by the quadrant it sits in. Generated from a seed, no download."""
import numpy as np
import tensorflow_datasets as tfds


class Blobs(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(16, 16, 1)),
            'label': tfds.features.ClassLabel(names=['top_left', 'top_right', 'bottom_left', 'bottom_right'])}))

    def _split_generators(self, dl_manager):
        return {'train': self._generate_examples(0, 256), 'validation': self._generate_examples(1, 64),
                'test': self._generate_examples(2, 64)}

    def _generate_examples(self, split, count):
        rng = np.random.default_rng([7, split])
        yy, xx = np.mgrid[0:16, 0:16]
        for i in range(count):
            label = int(rng.integers(0, 4))
            y = rng.uniform(1, 7) + 8 * (label // 2)
            x = rng.uniform(1, 7) + 8 * (label % 2)
            blob = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.0)
            image = np.clip(255 * blob + rng.normal(0, 20, blob.shape), 0, 255).astype(np.uint8)[..., None]
            yield i, {'image': image, 'label': label}
