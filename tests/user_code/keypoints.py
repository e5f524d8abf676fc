"""A researcher's own data kind, task and dataset in one file, without editing jaxdl: keypoint regression.

Each 24x24 grey image holds two bright dots (a big one and a small one); the task finds where each is. The data
kind `KEYPOINTS` reads the feature 'points' ([2, 2], normalised (y, x) of pixel centres, TFDS's convention for
keypoints) into the batch contract 'points' float32 [B, 2, 2] plus 'visible' bool [B, 2], and moves the points
with the image under flips and crops (jaxdl.data.preprocess.Placement). Named by import path:
`task.name='keypoints:KeypointRegression'`, whose `data_kind` is 'keypoints:KEYPOINTS'."""
import dataclasses

import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

SIZE = 24


class Dots(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(SIZE, SIZE, 1)),
            'points': tfds.features.Tensor(shape=(2, 2), dtype=np.float32)}))

    def _split_generators(self, dl_manager):
        return {'train': self._generate_examples(0, 384), 'validation': self._generate_examples(1, 64),
                'test': self._generate_examples(2, 64)}

    def _generate_examples(self, split, count):
        rng = np.random.default_rng([11, split])
        yy, xx = np.mgrid[0:SIZE, 0:SIZE]
        for i in range(count):
            centres = rng.uniform(3, SIZE - 4, (2, 2))
            image = sum(np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / r) for (y, x), r in zip(centres, (6.0, 1.5)))
            image = np.clip(255 * image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)[..., None]
            yield i, {'image': image, 'points': ((centres + 0.5) / SIZE).astype(np.float32)}


class Keypoints:
    """The data kind: a fixed number of (y, x) points per image, normalised, moving with the image."""
    name = 'keypoints'
    moves_with_image = True
    selects_by_label = False
    names_examples = False

    def features(self, task, dataset_cfg):
        return ('points',)

    def check(self, features, task, dataset_cfg):
        if tuple(features['points'].shape) != (task.num_points, 2):
            from jaxdl.errors import DatasetNotAvailable
            raise DatasetNotAvailable(f"'points' has shape {features['points'].shape}, the task finds {task.num_points}")

    def class_names(self, builder, dataset_cfg):
        return ()

    def converter(self, task, dataset_cfg, image_transform):
        import tensorflow as tf
        return lambda ex: {'image': image_transform(ex['image']), 'points': tf.cast(ex['points'], tf.float32),
                           'visible': tf.ones([task.num_points], tf.bool)}

    def augment(self, example, seed, augmentation, task):
        from jaxdl.data.preprocess import Placement
        placement = Placement.draw(seed, example['image'], augmentation)
        points, inside = placement.points(example['points'])
        # A mirror swaps nothing here: the two dots differ in size, not in side.
        return {**example, 'image': placement.image(example['image']), 'points': points,
                'visible': example['visible'] & inside}

    def prediction(self, raw_image, output, task, class_names, options):
        from jaxdl.data.kinds import Prediction
        points = np.asarray(output).reshape(-1, 2) * np.array(raw_image.shape[:2])
        return Prediction({'points': points.tolist()}, ', '.join(f'({y:.1f}, {x:.1f})' for y, x in points))


KEYPOINTS = Keypoints()


@dataclasses.dataclass(frozen=True)
class KeypointRegression:
    """Mean squared error of the visible points' normalised coordinates; reports the mean distance in pixels."""
    num_points: int = 2

    data_kind = 'keypoints:KEYPOINTS'
    head_options = {'head': 'dense'}
    headline = ('loss', 'pixel_error')

    @property
    def num_outputs(self):
        return 2 * self.num_points

    def check_outputs(self, outputs, image_shape, model):
        if outputs.shape != (2, self.num_outputs):
            raise ValueError(f'{model} outputs {outputs.shape}; keypoints need [batch, {self.num_outputs}]')

    def _points(self, outputs):
        return outputs.reshape(outputs.shape[0], self.num_points, 2)

    def per_example_loss(self, outputs, batch):
        visible = batch['visible'].astype(jnp.float32)
        error = jnp.sum((self._points(outputs) - batch['points']) ** 2, -1)
        return jnp.sum(error * visible, -1) / jnp.maximum(jnp.sum(visible, -1), 1.0)

    def train_metric_sums(self, outputs, batch, per_example_loss):
        valid = batch['valid'].astype(jnp.float32)
        seen = batch['visible'].astype(jnp.float32) * valid[:, None]
        distance = jnp.linalg.norm(self._points(outputs) - batch['points'], axis=-1) * SIZE
        return {'loss_sum': jnp.sum(per_example_loss * valid), 'count': jnp.sum(valid),
                'distance_sum': jnp.sum(distance * seen), 'points': jnp.sum(seen)}

    def eval_metric_sums(self, outputs, batch, per_example_loss):
        return self.train_metric_sums(outputs, batch, per_example_loss)

    def eval_predictions(self, outputs, batch):
        return {}

    def summarize(self, sums, predictions=None):
        sums = {k: float(np.asarray(v)) for k, v in sums.items()}
        return {'loss': sums['loss_sum'] / max(sums['count'], 1.0),
                'pixel_error': sums['distance_sum'] / max(sums['points'], 1.0), 'count': int(sums['count'])}

    def predict(self, outputs):
        return self._points(outputs)
