"""Checks that a segmentation or detection example is well formed, naming the example and the field that is not.

One implementation in TensorFlow ops serves both places examples are made: inside the tf.data pipeline (graph
mode: the checks are control dependencies of the converted example, and a failure surfaces as a `DataError`
from the batch iterator) and in the offline builders (eager mode: a failure raises at once, before the example
is written). Nothing is clipped or dropped silently: a box outside [0, 1] or upside down, a mask whose size is not
the image's, or a class id out of range is an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from jaxdl.errors import DataError


def assert_that(ok, example_id, what: str, *values):
    """A check that fails with "EXAMPLE WHAT VALUES" (see message_of)."""
    return tf.debugging.Assert(ok, [example_id, what, *values], summarize=64)


def mask_checks(example_id, image, mask, num_classes: int, ignore_label: int) -> list:
    """`mask` [H, W] or [H, W, 1] of class ids in 0..num_classes-1, or `ignore_label`; the image's height and width."""
    mask = tf.convert_to_tensor(mask)
    mask_hw = tf.shape(mask)[:2]
    image_hw = tf.shape(image)[:2]
    ids = tf.reshape(tf.cast(mask, tf.int64), [-1])
    in_range = (ids >= 0) & (ids < num_classes) | (ids == ignore_label)
    return [
        assert_that(
            tf.reduce_all(tf.equal(mask_hw, image_hw)),
            example_id,
            "segmentation_mask: height and width differ from the image's; mask, image:",
            mask_hw,
            image_hw,
        ),
        assert_that(
            tf.reduce_all(in_range),
            example_id,
            f'segmentation_mask: class ids must be in 0..{num_classes - 1} (or the ignore label {ignore_label}); '
            f'found:',
            tf.boolean_mask(ids, ~in_range)[:8],
        ),
    ]


def box_checks(example_id, boxes, labels, num_classes: int) -> list:
    """`boxes` [N, 4] normalised (ymin, xmin, ymax, xmax) in [0, 1] with min <= max; `labels` [N] in 0..C-1."""
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    labels = tf.cast(labels, tf.int64)
    inside = tf.reduce_all((boxes >= 0.0) & (boxes <= 1.0), axis=-1)
    ordered = (boxes[:, 0] <= boxes[:, 2]) & (boxes[:, 1] <= boxes[:, 3])
    known = (labels >= 0) & (labels < num_classes)
    return [
        assert_that(
            tf.equal(tf.shape(boxes)[0], tf.shape(labels)[0]),
            example_id,
            'objects: the number of boxes and of labels differ:',
            tf.shape(boxes)[0],
            tf.shape(labels)[0],
        ),
        assert_that(
            tf.reduce_all(inside),
            example_id,
            'objects/bbox: coordinates must be normalised to [0, 1]; boxes outside:',
            tf.boolean_mask(boxes, ~inside),
        ),
        assert_that(
            tf.reduce_all(ordered),
            example_id,
            'objects/bbox: boxes are (ymin, xmin, ymax, xmax) with ymin <= ymax and xmin <= xmax; boxes that are not:',
            tf.boolean_mask(boxes, ~ordered),
        ),
        assert_that(
            tf.reduce_all(known),
            example_id,
            f'objects/label: class ids must be in 0..{num_classes - 1}; found:',
            tf.boolean_mask(labels, ~known),
        ),
    ]


def checked(example: Any, checks: list) -> Any:
    """`example` with `checks` as control dependencies (graph mode), so it cannot be read without passing them."""
    with tf.control_dependencies(checks):
        return tf.nest.map_structure(tf.identity, example)


def reporting_data_errors(batches: Iterator[dict], describe: Callable | None = None) -> Iterator[dict]:
    """The batches, with a failed data-contract check (a bad box, mask or label) or a failed decode raised as a
    DataError that names the example instead of a TensorFlow op trace. `describe(error, k)` words the failure of
    the k-th batch (default: `message_of`, for the checks, which name their example themselves)."""
    k = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except tf.errors.InvalidArgumentError as e:
            raise DataError(describe(e, k) if describe else message_of(e)) from None
        k += 1
        yield batch


def message_of(error: tf.errors.InvalidArgumentError) -> str:
    """The readable part of a failed check: 'EXAMPLE FIELD: what is wrong VALUES'."""
    found = re.search(r'assertion failed: (.*)', error.message, re.S)
    if not found:  # an op that could not run on the example at all (e.g. mismatched shapes): tf's own words
        return f'an example does not fit the data contract: {error.message.splitlines()[0]}'
    text = found.group(1)
    text = re.split(r'\n\s*\[\[', text)[0]  # tf's op and graph trace follow
    return ' '.join(part.strip() for part in re.findall(r'\[(.*?)\](?=\s*\[|\s*$)', text, re.S)) or text.strip()


def check_numpy_examples(
    named: list[tuple[str, dict]], mask_classes: int, box_classes: int, ignore_label: int = 255
) -> None:
    """For builders: the same checks on (name, numpy example) pairs (image, segmentation_mask, objects) before
    any is written; raises DataError for the first bad one. One tf.data pass: running the ops eagerly, one
    example at a time, costs ~20 ms an example."""
    signature = {
        'name': tf.TensorSpec([], tf.string),
        'image': tf.TensorSpec([None, None, None], tf.uint8),
        'mask': tf.TensorSpec([None, None, None], tf.uint8),
        'boxes': tf.TensorSpec([None, 4], tf.float32),
        'labels': tf.TensorSpec([None], tf.int64),
    }
    rows = (
        {
            'name': name,
            'image': ex['image'],
            'mask': ex['segmentation_mask'],
            'boxes': np.asarray(ex['objects']['bbox'], np.float32).reshape(-1, 4),
            'labels': np.asarray(ex['objects']['label'], np.int64),
        }
        for name, ex in named
    )

    def check(ex):
        checks = mask_checks(ex['name'], ex['image'], ex['mask'], mask_classes, ignore_label) + box_checks(
            ex['name'], ex['boxes'], ex['labels'], box_classes
        )
        with tf.control_dependencies(checks):
            return tf.constant(1)

    try:
        tf.data.Dataset.from_generator(lambda: rows, output_signature=signature).map(check).reduce(
            0, lambda a, b: a + b
        )
    except tf.errors.InvalidArgumentError as e:
        raise DataError(message_of(e)) from None
