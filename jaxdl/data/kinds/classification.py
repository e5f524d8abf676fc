"""One class per image: `label` int32 [B], from the dataset's ClassLabel feature `dataset.label` (after class
selection, relabelled in order)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from jaxdl.data import preprocess
from jaxdl.data.kinds import DataKindDefaults, Prediction, class_label
from jaxdl.errors import DatasetNotAvailable


class Classification(DataKindDefaults):
    name = 'classification'
    selects_by_label = True
    mixes_labels = True

    def features(self, task, dataset_cfg):
        return (dataset_cfg.label,)

    def class_names(self, builder, dataset_cfg):
        names = tuple(class_label(builder, dataset_cfg, self.name).names)
        if dataset_cfg.classes:
            bad = [c for c in dataset_cfg.classes if not 0 <= c < len(names)]
            if bad:
                raise DatasetNotAvailable(
                    f'dataset.classes {bad} are not class ids of {dataset_cfg.name!r} (0..{len(names) - 1})'
                )
            names = tuple(names[c] for c in dataset_cfg.classes)
        return names

    def converter(self, task, dataset_cfg, image_transform):
        label = dataset_cfg.label
        return lambda ex: {'image': image_transform(ex['image']), 'label': tf.cast(ex[label], tf.int32)}

    def augment(self, example, seed, augmentation, task):
        return preprocess.augment_image(example, seed, augmentation)

    def prediction(self, raw_image, output, task, class_names, options):
        probs = np.asarray(output)
        order = np.argsort(-probs)[: options.top]
        top = [{'class': class_names[i], 'index': int(i), 'probability': float(probs[i])} for i in order]
        return Prediction({'top': top}, ', '.join(f'{t["class"]} {100 * t["probability"]:.1f}%' for t in top))


KIND = Classification()
