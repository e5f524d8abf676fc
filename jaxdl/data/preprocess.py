"""Per-task conversion of a TFDS example into the model-input contract, and per-example augmentation.

Everything here is a tf function of one example, so the same code serves the tf.data pipeline and `predict`
(a user's image goes through exactly the normalisation the model was trained with).
"""
from __future__ import annotations

import tensorflow as tf


def image_to_float(image: tf.Tensor, dataset_cfg) -> tf.Tensor:
    """uint8 [H, W, C] -> normalised float32 [S, S, C] (S = dataset.image_size, or the image's own size)."""
    image = tf.cast(image, tf.float32) / 255.0
    if dataset_cfg.image_size:
        size = (dataset_cfg.image_size, dataset_cfg.image_size)
        image = tf.image.resize(image, size, method='bilinear', antialias=True)
    mean = tf.constant(dataset_cfg.mean, tf.float32)
    std = tf.constant(dataset_cfg.std, tf.float32)
    return (image - mean) / std


def classification(example: dict, dataset_cfg, task_cfg) -> dict:
    return {'image': image_to_float(example['image'], dataset_cfg),
            'label': tf.cast(example[task_cfg.label], tf.int32)}


def regression(example: dict, dataset_cfg, task_cfg) -> dict:
    """`target`: float32 [K], the configured features in their own units (the task normalises for the loss)."""
    targets = [tf.reshape(tf.cast(example[name], tf.float32), []) for name in task_cfg.regression.targets]
    return {'image': image_to_float(example['image'], dataset_cfg), 'target': tf.stack(targets)}


PREPROCESSORS = {'classification': classification, 'regression': regression}


def augment_classification(example: dict, seed: tf.Tensor, augment_cfg) -> dict:
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


# Regression reuses it: translation keeps an angle; a flip would negate it, so config validation refuses
# flip_left_right for regression.
AUGMENTERS = {'classification': augment_classification, 'regression': augment_classification}


def needs_augmentation(augment_cfg) -> bool:
    return bool(augment_cfg.flip_left_right or augment_cfg.crop_padding)
