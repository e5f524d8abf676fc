"""Several classes per image: `labels` float32 [B, C], 1 for each class present, from the dataset's feature
`dataset.label` holding a Sequence of ClassLabel (TFDS's convention for multi-label data, e.g. voc's `labels`)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from jaxdl.data import preprocess
from jaxdl.data.kinds import DataKindDefaults, Prediction, class_label


class MultiLabel(DataKindDefaults):
    name = 'multilabel'
    mixes_labels = True

    def features(self, task, dataset_cfg):
        return (dataset_cfg.label,)

    def class_names(self, builder, dataset_cfg):
        return tuple(class_label(builder, dataset_cfg, 'multi-label classification', sequence=True).names)

    def converter(self, task, dataset_cfg, image_transform):
        label, num_classes = dataset_cfg.label, task.num_classes

        def convert(ex):
            present = tf.minimum(tf.reduce_sum(tf.one_hot(tf.cast(ex[label], tf.int32), num_classes), axis=0), 1.0)
            return {'image': image_transform(ex['image']), 'labels': tf.ensure_shape(present, [num_classes])}

        return convert

    def augment(self, example, seed, augmentation, task):
        return preprocess.augment_image(example, seed, augmentation)

    def prediction(self, raw_image, output, task, class_names, options):
        probs = np.asarray(output)
        present = [
            {'class': class_names[i], 'index': int(i), 'probability': float(probs[i])}
            for i in np.argsort(-probs)
            if probs[i] >= task.threshold
        ]
        return Prediction(
            {'present': present, 'probabilities': {n: float(p) for n, p in zip(class_names, probs)}},
            ', '.join(f'{p["class"]} {100 * p["probability"]:.1f}%' for p in present) or 'none present',
        )


KIND = MultiLabel()
