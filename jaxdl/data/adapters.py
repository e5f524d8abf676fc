"""Adapters from a dataset's own features to what segmentation and detection preprocessing read.

    segmentation: (image uint8 [H, W, C], mask int32 [H, W] of class ids, 0 = background, or the ignore label)
    detection:    (image uint8 [H, W, C], boxes float32 [N, 4] normalised (ymin, xmin, ymax, xmax),
                   labels int32 [N], ignore bool [N]: regions neither to find nor to penalise)

Detection reads TFDS's own convention -- `objects/bbox` and `objects/label`, with `objects/is_crowd` (COCO) or
`objects/is_difficult` (VOC) as ignore -- so `shapes`, `voc` and `coco` need nothing dataset-specific.
Segmentation masks differ per dataset (what each value means), so each dataset names its classes and mapping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf

from jaxdl.data import checks
from jaxdl.errors import DatasetNotAvailable


@dataclasses.dataclass(frozen=True)
class MaskSource:
    class_names: tuple[str, ...]
    # (raw mask [H, W, 1], example id, ignore label) -> class ids [H, W]; may add checks of the raw values
    to_classes: Callable


def _class_ids(mask, example_id, ignore_label):
    """Masks that already hold class ids (0 = background): `shapes`, and any dataset drawn the same way."""
    return tf.cast(mask[..., 0], tf.int32)


def _pet_trimap(mask, example_id, ignore_label):
    """oxford_iiit_pet's trimap: 1 pet, 2 background, 3 border (unsure, so ignored) -> 1 pet, 0 background."""
    raw = tf.cast(mask[..., 0], tf.int32)
    known = (raw >= 1) & (raw <= 3)
    check = checks.assert_that(
        tf.reduce_all(known),
        example_id,
        'segmentation_mask: oxford_iiit_pet trimap values are 1 (pet), 2 (background) or 3 (border); found:',
        tf.boolean_mask(raw, ~known)[:8],
    )
    with tf.control_dependencies([check]):
        return tf.gather(tf.constant([0, 1, 0, ignore_label], tf.int32), tf.clip_by_value(raw, 0, 3))


MASK_SOURCES = {
    'shapes': MaskSource(('background', 'circle', 'square', 'triangle'), _class_ids),
    'oxford_iiit_pet': MaskSource(('background', 'pet'), _pet_trimap),
}


def mask_source(dataset: str) -> MaskSource:
    if dataset not in MASK_SOURCES:
        raise DatasetNotAvailable(
            f'no segmentation adapter for dataset {dataset!r} (what its mask values mean); '
            f'datasets with one: {", ".join(MASK_SOURCES)}. Add a MaskSource to '
            f'jaxdl.data.adapters.MASK_SOURCES.'
        )
    return MASK_SOURCES[dataset]


def detection_class_names(features) -> tuple[str, ...]:
    label = features['objects']['label']
    return tuple(label.names)


def read_mask(dataset: str, example: dict, ignore_label: int):
    """(image, class-id mask) of one raw example, checked against the data contract."""
    example_id = example.get('example_id', tf.constant(dataset))
    source = mask_source(dataset)
    image = example['image']
    mask = source.to_classes(example['segmentation_mask'], example_id, ignore_label)
    return checks.checked(
        (image, mask), checks.mask_checks(example_id, image, mask, len(source.class_names), ignore_label)
    )


def read_boxes(example: dict, num_classes: int, max_objects: int):
    """(image, boxes, labels, ignore) of one raw example, checked against the data contract."""
    example_id = example.get('example_id', tf.constant('example'))
    objects = example['objects']
    boxes = tf.reshape(tf.cast(objects['bbox'], tf.float32), [-1, 4])
    flags = [f for f in ('is_crowd', 'is_difficult') if f in objects]
    lengths = tf.stack([tf.shape(boxes)[0]] + [tf.shape(objects[f])[0] for f in ['label', *flags]])
    same_length = checks.assert_that(
        tf.reduce_all(tf.equal(lengths, lengths[0])),
        example_id,
        f'objects: bbox, {", ".join(["label", *flags])} must have one entry per object; lengths:',
        lengths,
    )
    with tf.control_dependencies([same_length]):
        labels = tf.cast(objects['label'], tf.int32)
        ignore = tf.zeros_like(labels, tf.bool)
        for flag in flags:  # crowd regions (COCO) and difficult objects (VOC): neither to find nor to penalise
            ignore = ignore | tf.cast(objects[flag], tf.bool)
    count = tf.shape(boxes)[0]
    fits = checks.assert_that(
        count <= max_objects,
        example_id,
        f'objects: more objects than task.detection.max_objects={max_objects}; found:',
        count,
    )
    return checks.checked(
        (example['image'], boxes, labels, ignore),
        checks.box_checks(example_id, boxes, labels, num_classes) + [same_length, fits],
    )
