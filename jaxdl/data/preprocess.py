"""Per-task conversion of a TFDS example into the model-input contract, and per-example augmentation.

Everything here is a tf function of one example, so the same code serves the tf.data pipeline and `predict`
(a user's image goes through exactly the normalisation the model was trained with).
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from jaxdl.data import adapters


@dataclasses.dataclass(frozen=True)
class ImageFormat:
    """How images become model inputs: the central square of `center_crop` of the shorter side kept (0 keeps the
    whole image), resized to `size` x `size` (0 keeps their size; `antialias` filters a reduction), scaled to
    [0, 1] and normalised per channel by `mean` and `std` (one value, or one per channel)."""
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    center_crop: float = 0.0
    antialias: bool = True

    @classmethod
    def of(cls, dataset_cfg) -> 'ImageFormat':
        # The ImageNet-style transforms resample as TF's and big_vision's ImageNet input do (bilinear, no
        # antialiasing filter): the filtered resize took 3.7x the time of the whole JPEG decode per image
        # (benchmarks/README.md), and training and evaluation must resample alike.
        imagenet_style = bool(dataset_cfg.augment.random_resized_crop or dataset_cfg.center_crop)
        return cls(int(dataset_cfg.image_size), tuple(float(v) for v in dataset_cfg.mean),
                   tuple(float(v) for v in dataset_cfg.std), float(dataset_cfg.center_crop), not imagenet_style)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Per-example random augmentation of training images (dataset.augment)."""
    flip_left_right: bool = False
    crop_padding: int = 0      # random translation: pad by n pixels, crop back
    crop_area: float = 1.0     # segmentation, detection: a random crop of [crop_area, 1] of the image, resized back

    @classmethod
    def of(cls, augment_cfg) -> 'Augmentation':
        return cls(bool(augment_cfg.flip_left_right), int(augment_cfg.crop_padding), float(augment_cfg.crop_area))

    @property
    def active(self) -> bool:
        return self.flip_left_right or self.crop_padding > 0 or self.crop_area < 1.0


def center_crop(image: tf.Tensor, fraction: float) -> tf.Tensor:
    """The central square of `fraction` of the shorter side (the evaluation crop of ImageNet models: 0.875)."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.maximum(tf.cast(fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32), 1)
    return tf.image.crop_to_bounding_box(image, (height - side) // 2, (width - side) // 2, side, side)


def image_to_float(image: tf.Tensor, image_format: ImageFormat) -> tf.Tensor:
    """uint8 [H, W, C] -> normalised float32 [S, S, C] (S = the format's size, or the image's own size)."""
    if image_format.center_crop:
        image = center_crop(image, image_format.center_crop)
    image = tf.cast(image, tf.float32) / 255.0
    if image_format.size:
        image = tf.image.resize(image, (image_format.size, image_format.size), method='bilinear',
                                antialias=image_format.antialias)
    mean = tf.constant(image_format.mean, tf.float32)
    std = tf.constant(image_format.std, tf.float32)
    return (image - mean) / std


def classification(example: dict, image_format: ImageFormat, *, label: str) -> dict:
    """`label`: int32, the class in the dataset's feature of that name."""
    return {'image': image_to_float(example['image'], image_format), 'label': tf.cast(example[label], tf.int32)}


def regression(example: dict, image_format: ImageFormat, *, targets: tuple[str, ...]) -> dict:
    """`target`: float32 [K], the named features in their own units (the task normalises for the loss)."""
    values = [tf.reshape(tf.cast(example[name], tf.float32), []) for name in targets]
    return {'image': image_to_float(example['image'], image_format), 'target': tf.stack(values)}


def segmentation(example: dict, image_format: ImageFormat, *, dataset: str, ignore_label: int) -> dict:
    """`mask`: int32 [S, S], the class of each pixel (0 background) or the ignore label; resized with the image,
    by nearest neighbour so no pixel gets a class in between two others."""
    image, mask = adapters.read_mask(dataset, example, ignore_label)
    if image_format.size:
        mask = tf.image.resize(mask[..., None], (image_format.size, image_format.size), method='nearest')[..., 0]
    return {'image': image_to_float(image, image_format), 'mask': tf.cast(mask, tf.int32)}


def detection(example: dict, image_format: ImageFormat, *, num_classes: int, max_objects: int) -> dict:
    """`boxes` float32 [M, 4] normalised (ymin, xmin, ymax, xmax), `box_labels` int32 [M], `box_valid` and
    `box_ignore` bool [M]: the objects padded to M = max_objects. Normalised boxes need no change when the image is
    resized."""
    m = max_objects
    image, boxes, labels, ignore = adapters.read_boxes(example, num_classes, m)
    padding = [[0, m - tf.shape(boxes)[0]]]
    return {'image': image_to_float(image, image_format),
            'boxes': tf.ensure_shape(tf.pad(boxes, padding + [[0, 0]]), [m, 4]),
            'box_labels': tf.ensure_shape(tf.pad(labels, padding), [m]),
            'box_valid': tf.ensure_shape(tf.pad(tf.ones_like(labels, tf.bool), padding), [m]),
            'box_ignore': tf.ensure_shape(tf.pad(ignore, padding), [m])}


def for_task(task, dataset_cfg, image_format: ImageFormat | None = None):
    """example -> the data contract of `task.data_kind`, with the task's own settings (regression's targets,
    segmentation's ignore label, detection's object count) and the dataset's label feature. `image_format`:
    the dataset's (ImageFormat.of), or another for a reader whose images arrive already cropped."""
    image_format = image_format or ImageFormat.of(dataset_cfg)
    kind = task.data_kind
    if kind == 'classification':
        return lambda ex: classification(ex, image_format, label=dataset_cfg.label)
    if kind == 'regression':
        return lambda ex: regression(ex, image_format, targets=tuple(task.targets))
    if kind == 'segmentation':
        return lambda ex: segmentation(ex, image_format, dataset=dataset_cfg.name, ignore_label=task.ignore_label)
    return lambda ex: detection(ex, image_format, num_classes=task.num_classes, max_objects=task.max_objects)


def augment_image(example: dict, seed: tf.Tensor, augment: Augmentation, ignore_label: int = 0) -> dict:
    """Random flip and translation of the image alone (classification, regression), drawn from `seed` alone
    (stateless), so a resumed epoch redraws the same."""
    del ignore_label
    image = example['image']
    flip_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if augment.flip_left_right:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    if augment.crop_padding:
        pad = augment.crop_padding
        padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        image = tf.image.stateless_random_crop(padded, tf.shape(image), crop_seed)
    return {**example, 'image': image}


def _window(seed, size, augment: Augmentation):
    """A random sampling window per axis: (start, step) in source pixel centres, so output pixel i samples the
    source at start + i * step. It zooms in on a crop of [crop_area, 1] of the image area (step < 1) and shifts by
    up to crop_padding pixels (the outside is padding)."""
    area_seed, y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    scale = tf.sqrt(tf.random.stateless_uniform([], area_seed, augment.crop_area, 1.0))
    size = tf.cast(size, tf.float32)
    pad = float(augment.crop_padding)
    room = (size - 1) * (1 - scale)  # how far a crop of this scale can move inside the image
    start = lambda axis_seed, n: tf.random.stateless_uniform([], axis_seed, -pad, room[n] + pad)
    return tf.stack([start(y_seed, 0), start(x_seed, 1)]), scale


def augment_geometric(example: dict, seed: tf.Tensor, augment: Augmentation, ignore_label: int = 0) -> dict:
    """Flip, crop (zoom) and translation applied alike to the image, its mask and its boxes.

    One sampling window moves all three: the image is resampled bilinearly, the mask by nearest neighbour (pixels
    from outside the image get the ignore label), and each box's edges go through the same affine map, clipped to
    the image; a box with less than half of itself left inside is marked invalid."""
    image = example['image']
    out = dict(example)
    flip_seed, window_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if augment.flip_left_right:
        flip = tf.random.stateless_uniform([], flip_seed) < 0.5
        image = tf.where(flip, tf.reverse(image, [1]), image)
        if 'mask' in out:
            out['mask'] = tf.where(flip, tf.reverse(out['mask'], [1]), out['mask'])
        if 'boxes' in out:
            b = out['boxes']
            mirrored = tf.stack([b[:, 0], 1.0 - b[:, 3], b[:, 2], 1.0 - b[:, 1]], axis=-1)
            out['boxes'] = tf.where(flip, mirrored, b)
    if augment.crop_area < 1.0 or augment.crop_padding:
        hw = tf.shape(image)[:2]
        size = tf.cast(hw, tf.float32)
        start, step = _window(window_seed, hw, augment)
        # crop_and_resize's box: (y1, x1, y2, x2) with the source pixel-centre coordinate p = y1 * (H - 1) + ...
        end = start + step * (size - 1)
        box = tf.concat([start / (size - 1), end / (size - 1)], 0)[None]
        resample = lambda x, method, fill: tf.image.crop_and_resize(
            tf.cast(x, tf.float32)[None], box, [0], hw, method=method, extrapolation_value=fill)[0]
        image = resample(image, 'bilinear', 0.0)
        if 'mask' in out:
            ignore = float(ignore_label)
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


# Which augmentation keeps each data contract: classification and regression move the image alone (a flip is
# refused where it changes the target), segmentation and detection move masks and boxes with it.
AUGMENTERS = {'classification': augment_image, 'regression': augment_image, 'segmentation': augment_geometric,
              'detection': augment_geometric}
