"""Per-task conversion of a TFDS example into the model-input contract, and per-example augmentation.

Everything here is a tf function of one example, so the same code serves the tf.data pipeline and `predict`
(a user's image goes through exactly the normalisation the model was trained with).
"""
from __future__ import annotations

import tensorflow as tf

from jaxdl.data import adapters


def image_to_float(image: tf.Tensor, dataset_cfg) -> tf.Tensor:
    """uint8 [H, W, C] -> normalised float32 [S, S, C] (S = dataset.image_size, or the image's own size)."""
    image = tf.cast(image, tf.float32) / 255.0
    if dataset_cfg.image_size:
        size = (dataset_cfg.image_size, dataset_cfg.image_size)
        image = tf.image.resize(image, size, method='bilinear', antialias=True)
    mean = tf.constant(dataset_cfg.mean, tf.float32)
    std = tf.constant(dataset_cfg.std, tf.float32)
    return (image - mean) / std


def classification(example: dict, dataset_cfg, task_cfg, num_classes: int) -> dict:
    return {'image': image_to_float(example['image'], dataset_cfg),
            'label': tf.cast(example[task_cfg.label], tf.int32)}


def regression(example: dict, dataset_cfg, task_cfg, num_classes: int) -> dict:
    """`target`: float32 [K], the configured features in their own units (the task normalises for the loss)."""
    targets = [tf.reshape(tf.cast(example[name], tf.float32), []) for name in task_cfg.regression.targets]
    return {'image': image_to_float(example['image'], dataset_cfg), 'target': tf.stack(targets)}


def segmentation(example: dict, dataset_cfg, task_cfg, num_classes: int) -> dict:
    """`mask`: int32 [S, S], the class of each pixel (0 background) or the ignore label; resized with the image,
    by nearest neighbour so no pixel gets a class in between two others."""
    image, mask = adapters.read_mask(dataset_cfg.name, example, task_cfg.segmentation.ignore_label)
    if dataset_cfg.image_size:
        size = (dataset_cfg.image_size, dataset_cfg.image_size)
        mask = tf.image.resize(mask[..., None], size, method='nearest')[..., 0]
    return {'image': image_to_float(image, dataset_cfg), 'mask': tf.cast(mask, tf.int32)}


def detection(example: dict, dataset_cfg, task_cfg, num_classes: int) -> dict:
    """`boxes` float32 [M, 4] normalised (ymin, xmin, ymax, xmax), `box_labels` int32 [M], `box_valid` and
    `box_ignore` bool [M]: the objects padded to M = task.detection.max_objects. Normalised boxes need no change
    when the image is resized."""
    m = task_cfg.detection.max_objects
    image, boxes, labels, ignore = adapters.read_boxes(example, num_classes, m)
    padding = [[0, m - tf.shape(boxes)[0]]]
    return {'image': image_to_float(image, dataset_cfg),
            'boxes': tf.ensure_shape(tf.pad(boxes, padding + [[0, 0]]), [m, 4]),
            'box_labels': tf.ensure_shape(tf.pad(labels, padding), [m]),
            'box_valid': tf.ensure_shape(tf.pad(tf.ones_like(labels, tf.bool), padding), [m]),
            'box_ignore': tf.ensure_shape(tf.pad(ignore, padding), [m])}


PREPROCESSORS = {'classification': classification, 'regression': regression, 'segmentation': segmentation,
                 'detection': detection}


def augment_classification(example: dict, seed: tf.Tensor, augment_cfg, task_cfg) -> dict:
    """Random flip and translation drawn from `seed` alone (stateless), so a resumed epoch redraws the same."""
    image = example['image']
    flip_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if augment_cfg.flip_left_right:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    if augment_cfg.crop_padding:
        pad = augment_cfg.crop_padding
        padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        image = tf.image.stateless_random_crop(padded, tf.shape(image), crop_seed)
    return {**example, 'image': image}


def _window(seed, size, augment_cfg):
    """A random sampling window per axis: (start, step) in source pixel centres, so output pixel i samples the
    source at start + i * step. It zooms in on a crop of [crop_area, 1] of the image area (step < 1) and shifts by
    up to crop_padding pixels (the outside is padding)."""
    area_seed, y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    scale = tf.sqrt(tf.random.stateless_uniform([], area_seed, augment_cfg.crop_area, 1.0))
    size = tf.cast(size, tf.float32)
    pad = float(augment_cfg.crop_padding)
    room = (size - 1) * (1 - scale)  # how far a crop of this scale can move inside the image
    start = lambda axis_seed, n: tf.random.stateless_uniform([], axis_seed, -pad, room[n] + pad)
    return tf.stack([start(y_seed, 0), start(x_seed, 1)]), scale


def augment_geometric(example: dict, seed: tf.Tensor, augment_cfg, task_cfg) -> dict:
    """Flip, crop (zoom) and translation applied alike to the image, its mask and its boxes.

    One sampling window moves all three: the image is resampled bilinearly, the mask by nearest neighbour (pixels
    from outside the image get the ignore label), and each box's edges go through the same affine map, clipped to
    the image; a box with less than half of itself left inside is marked invalid."""
    image = example['image']
    out = dict(example)
    flip_seed, window_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if augment_cfg.flip_left_right:
        flip = tf.random.stateless_uniform([], flip_seed) < 0.5
        image = tf.where(flip, tf.reverse(image, [1]), image)
        if 'mask' in out:
            out['mask'] = tf.where(flip, tf.reverse(out['mask'], [1]), out['mask'])
        if 'boxes' in out:
            b = out['boxes']
            mirrored = tf.stack([b[:, 0], 1.0 - b[:, 3], b[:, 2], 1.0 - b[:, 1]], axis=-1)
            out['boxes'] = tf.where(flip, mirrored, b)
    if augment_cfg.crop_area < 1.0 or augment_cfg.crop_padding:
        hw = tf.shape(image)[:2]
        size = tf.cast(hw, tf.float32)
        start, step = _window(window_seed, hw, augment_cfg)
        # crop_and_resize's box: (y1, x1, y2, x2) with the source pixel-centre coordinate p = y1 * (H - 1) + ...
        end = start + step * (size - 1)
        box = tf.concat([start / (size - 1), end / (size - 1)], 0)[None]
        resample = lambda x, method, fill: tf.image.crop_and_resize(
            tf.cast(x, tf.float32)[None], box, [0], hw, method=method, extrapolation_value=fill)[0]
        image = resample(image, 'bilinear', 0.0)
        if 'mask' in out:
            ignore = float(task_cfg.segmentation.ignore_label)
            out['mask'] = tf.cast(resample(out['mask'][..., None], 'nearest', ignore)[..., 0], tf.int32)
        if 'boxes' in out:
            # A box edge e (normalised) is at source pixel-centre coordinate e * size - 0.5; the output coordinate
            # is (that - start) / step, and back to a normalised edge.
            b = out['boxes']
            scale, first = tf.tile(size, [2]), tf.tile(start, [2])
            moved = ((b * scale - 0.5 - first) / step + 0.5) / scale
            clipped = tf.clip_by_value(moved, 0.0, 1.0)
            area = lambda x: tf.maximum(x[:, 2] - x[:, 0], 0.0) * tf.maximum(x[:, 3] - x[:, 1], 0.0)
            inside = area(clipped) >= 0.5 * area(moved)
            out['box_valid'] = out['box_valid'] & inside & (area(clipped) > 0)
            out['boxes'] = tf.where(out['box_valid'][:, None], clipped, 0.0)
    out['image'] = image
    return out


# Regression reuses augment_classification: translation keeps an angle; a flip would negate it, so config
# validation refuses flip_left_right for regression.
AUGMENTERS = {'classification': augment_classification, 'regression': augment_classification,
              'segmentation': augment_geometric, 'detection': augment_geometric}


def needs_augmentation(augment_cfg) -> bool:
    return bool(augment_cfg.flip_left_right or augment_cfg.crop_padding or augment_cfg.crop_area < 1.0)
