"""Numbers per image: `target` float32 [B, K], the task's `targets` features in their own units (the task
normalises them for its loss)."""

from __future__ import annotations

import tensorflow as tf

from jaxdl.data import preprocess
from jaxdl.data.kinds import DataKindDefaults, Prediction


class Regression(DataKindDefaults):
    name = 'regression'
    selects_by_label = True  # images may be chosen by a class feature besides their targets

    def features(self, task, dataset_cfg):
        return tuple(task.targets)

    def converter(self, task, dataset_cfg, image_transform):
        targets = tuple(task.targets)

        def convert(ex):
            values = [tf.reshape(tf.cast(ex[name], tf.float32), []) for name in targets]
            return {'image': image_transform(ex['image']), 'target': tf.stack(values)}

        return convert

    def augment(self, example, seed, augmentation, task):
        return preprocess.augment_image(example, seed, augmentation)

    def prediction(self, raw_image, output, task, class_names, options):
        values = {target: float(v) for target, v in zip(task.targets, output)}
        return Prediction(values, ', '.join(f'{target} {v:.2f}' for target, v in values.items()))


KIND = Regression()
