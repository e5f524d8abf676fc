"""A class per pixel: `mask` int32 [B, S, S] (0 background, or the task's ignore label), from the dataset's
`segmentation_mask` through its `adapters.MaskSource` (what its values mean), resized with the image by nearest
neighbour so no pixel gets a class in between two others."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from jaxdl.data import adapters, preprocess
from jaxdl.data.kinds import DataKindDefaults, Prediction


class Segmentation(DataKindDefaults):
    name = 'segmentation'
    moves_with_image = True
    names_examples = True

    def features(self, task, dataset_cfg):
        return ('segmentation_mask',)

    def check(self, features, task, dataset_cfg):
        adapters.mask_source(dataset_cfg.name)

    def class_names(self, builder, dataset_cfg):
        return adapters.mask_source(dataset_cfg.name).class_names

    def converter(self, task, dataset_cfg, image_transform):
        dataset, ignore_label, size = dataset_cfg.name, task.ignore_label, int(dataset_cfg.image_size)

        def convert(ex):
            image, mask = adapters.read_mask(dataset, ex, ignore_label)
            if size:
                mask = tf.image.resize(mask[..., None], (size, size), method='nearest')[..., 0]
            return {'image': image_transform(image), 'mask': tf.cast(mask, tf.int32)}

        return convert

    def augment(self, example, seed, augmentation, task):
        placement = preprocess.Placement.draw(seed, example['image'], augmentation)
        return {
            **example,
            'image': placement.image(example['image']),
            'mask': placement.mask(example['mask'], task.ignore_label),
        }

    def prediction(self, raw_image, output, task, class_names, options):
        from jaxdl import overlays

        class_map = np.asarray(output['class_map'])
        shares = {class_names[c]: float(np.mean(class_map == c)) for c in range(len(class_names))}
        return Prediction(
            {'pixel_share': shares},
            ', '.join(f'{k} {100 * v:.1f}%' for k, v in shares.items() if v > 0),
            overlays.mask_overlay(raw_image, class_map),
            'segmentation',
        )


KIND = Segmentation()
