"""In-memory arrays (a notebook's numpy images and labels) stored once as a prepared TFDS dataset, so they train
through the same pipeline, checks, checkpoints and reruns as any dataset."""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import numpy as np

from jaxdl.data import quiet_tfds, resolve_data_dir
from jaxdl.errors import DatasetNotAvailable
from jaxdl.logging import display_path


def _as_images(images, split: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]  # [N, H, W] grey
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DatasetNotAvailable(
            f'from_arrays: split {split!r}: images must be [N, H, W], [N, H, W, 1] or '
            f'[N, H, W, 3], got shape {images.shape}'
        )
    if images.dtype not in (np.uint8, np.float32):
        raise DatasetNotAvailable(
            f'from_arrays: split {split!r}: images must be uint8 pixels (0..255; they travel to the device as '
            f'uint8) or float32 model inputs in their own units, got {images.dtype}; e.g. '
            f'(np.clip(x, 0, 1) * 255).round().astype(np.uint8), or x.astype(np.float32)'
        )
    return images


def from_arrays(name: str, splits: dict, data_dir: str = '', *, class_names=None) -> str:
    """Stores `splits` = {'train': (images, labels), 'validation': ..., 'test': ...} as a prepared TFDS dataset in
    `data_dir` (default: $TFDS_DATA_DIR or ~/tensorflow_datasets) and returns the `dataset.name` that trains on it.

    images: [N, H, W] or [N, H, W, C] (C = 1 or 3), uint8 pixels (batched as uint8 and normalised by
    dataset.mean and std on the device) or float32 values in their own units (batched as float32, normalised by
    dataset.mean and std on the host: the defaults leave them as they are). labels: int class ids [N] (a `label` feature named by
    `class_names`, default '0', '1', ...), or a dict of named float arrays [N] (regression targets, e.g.
    {'angle': angles}). The same arrays give the same name and are stored once; other arrays get another."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.dataset_builders import adhoc_builder

    if not re.fullmatch(r'[a-z][a-z0-9_]*', name):
        raise DatasetNotAvailable(f'from_arrays: name {name!r} must be lower case letters, digits and _')
    if not splits:
        raise DatasetNotAvailable('from_arrays: give at least one split, e.g. {"train": (images, labels)}')
    prepared, digest, shape, dtype = {}, hashlib.sha256(), None, None
    for split, (images, targets) in splits.items():
        images = _as_images(images, split)
        if shape is not None and (images.shape[1:], images.dtype) != (shape, dtype):
            raise DatasetNotAvailable(
                f'from_arrays: split {split!r} has {images.dtype} images of {images.shape[1:]}, another split '
                f'{dtype} {shape}; give every split the same image shape and dtype'
            )
        shape, dtype = images.shape[1:], images.dtype
        columns = (
            {'label': np.asarray(targets)}
            if not isinstance(targets, dict)
            else {k: np.asarray(v, np.float32) for k, v in targets.items()}
        )
        for key, column in columns.items():
            if len(column) != len(images):
                raise DatasetNotAvailable(
                    f'from_arrays: split {split!r} has {len(images)} images but {len(column)} {key} values'
                )
        prepared[split] = (images, columns)
        digest.update(split.encode() + images.tobytes() + repr(shape).encode() + str(dtype).encode())
        for key, column in sorted(columns.items()):
            digest.update(key.encode() + column.tobytes() + str(column.dtype).encode())
    label_columns = [c['label'] for _, c in prepared.values() if 'label' in c]
    # 8-bit images are stored as PNG; float32 ones as their values (an Image feature holds no float32 colour)
    image_feature = (
        tfds.features.Image(shape=shape) if dtype == np.uint8 else tfds.features.Tensor(shape=shape, dtype=np.float32)
    )
    features = {'image': image_feature}
    if label_columns:
        labels = np.concatenate(label_columns)
        if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
            raise DatasetNotAvailable(
                'from_arrays: labels must be integer class ids >= 0 (for regression targets '
                'give a dict of named float arrays)'
            )
        names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(int(labels.max()) + 1))
        if labels.max() >= len(names):
            raise DatasetNotAvailable(
                f'from_arrays: label {int(labels.max())} has no name among the {len(names)} class_names'
            )
        features['label'] = tfds.features.ClassLabel(names=names)
        digest.update(repr(names).encode())
    for key in next(iter(prepared.values()))[1]:
        if key != 'label':
            features[key] = tfds.features.Scalar(np.float32)
    version_key = 'h' + digest.hexdigest()[:12]
    data_dir = resolve_data_dir(data_dir)
    full_name = f'{name}/{version_key}'
    builder_dir = f'{data_dir}/{name}/{version_key}/1.0.0'
    if (Path(builder_dir) / 'dataset_info.json').is_file():  # stored before (tfds writes it last)
        return full_name

    def examples(images, columns):
        for i in range(len(images)):
            yield (
                i,
                {'image': images[i], **{k: (int(v[i]) if k == 'label' else float(v[i])) for k, v in columns.items()}},
            )

    print(f'storing arrays as the dataset {full_name} (once) in {display_path(data_dir)}', file=sys.stderr, flush=True)
    with quiet_tfds():
        adhoc_builder.store_as_tfds_dataset(
            name=name,
            config=version_key,
            version='1.0.0',
            features=tfds.features.FeaturesDict(features),
            split_datasets={s: examples(*v) for s, v in prepared.items()},
            data_dir=data_dir,
            description='Arrays stored by jaxdl.data.from_arrays.',
        )
    return full_name
