"""Objects in boxes: `boxes` float32 [B, M, 4] normalised (ymin, xmin, ymax, xmax), `box_labels` int32 [B, M],
`box_valid` and `box_ignore` bool [B, M], padded to M = the task's `max_objects`. Read from TFDS's own convention,
`objects/bbox` and `objects/label` (`adapters.read_boxes`), so `shapes`, `voc` and `coco` read alike. Normalised
boxes need no change when the image is resized."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from jaxdl.data import adapters, preprocess
from jaxdl.data.kinds import DataKindDefaults, Prediction
from jaxdl.errors import DatasetNotAvailable


class Detection(DataKindDefaults):
    name = 'detection'
    moves_with_image = True
    names_examples = True

    def features(self, task, dataset_cfg):
        return ('objects',)

    def check(self, features, task, dataset_cfg):
        if not all(k in features['objects'] for k in ('bbox', 'label')):
            raise DatasetNotAvailable(
                f'dataset {dataset_cfg.name!r}: detection reads objects/bbox and objects/label; '
                f'its objects have {", ".join(features["objects"].keys())}'
            )

    def class_names(self, builder, dataset_cfg):
        return adapters.detection_class_names(builder.info.features)

    def converter(self, task, dataset_cfg, image_transform):
        m, num_classes = task.max_objects, task.num_classes

        def convert(ex):
            image, boxes, labels, ignore = adapters.read_boxes(ex, num_classes, m)
            padding = [[0, m - tf.shape(boxes)[0]]]
            return {
                'image': image_transform(image),
                'boxes': tf.ensure_shape(tf.pad(boxes, padding + [[0, 0]]), [m, 4]),
                'box_labels': tf.ensure_shape(tf.pad(labels, padding), [m]),
                'box_valid': tf.ensure_shape(tf.pad(tf.ones_like(labels, tf.bool), padding), [m]),
                'box_ignore': tf.ensure_shape(tf.pad(ignore, padding), [m]),
            }

        return convert

    def augment(self, example, seed, augmentation, task):
        placement = preprocess.Placement.draw(seed, example['image'], augmentation)
        boxes, valid = placement.boxes(example['boxes'], example['box_valid'])
        return {**example, 'image': placement.image(example['image']), 'boxes': boxes, 'box_valid': valid}

    def prediction(self, raw_image, output, task, class_names, options):
        from jaxdl import overlays

        keep = np.asarray(output['scores']) >= options.min_score
        boxes, scores, classes = (np.asarray(output[k])[keep] for k in ('boxes', 'scores', 'classes'))
        detections = [
            {'class': class_names[int(c)], 'score': float(s), 'box': [float(v) for v in b]}
            for b, s, c in zip(boxes, scores, classes)
        ]
        return Prediction(
            {'detections': detections},
            ', '.join(f'{d["class"]} {d["score"]:.2f}' for d in detections) or 'no objects',
            overlays.draw_boxes(raw_image, boxes, classes, class_names, scores),
            'detections',
        )


KIND = Detection()
