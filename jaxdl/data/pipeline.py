"""tfds -> tf.data -> numpy batches that follow the data contract of DESIGN.md.

Training: each process reads the whole split in the same seeded, epoch-dependent order, batches it by the
*global* batch and keeps its own rows, so the global batches (and so the parameters) do not depend on the
process count. Batches drop the remainder and are all valid. A resumed epoch skips the batches already seen.

Evaluation: each process reads its own even share of the split (`tfds.even_splits`), pads to the same number
of batches as every other process and marks padding in `valid`, so every example is counted exactly once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import sys
from typing import Iterator

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxdl.data import (CATALOG_CLASSIFICATION, CATALOG_DETECTION, CATALOG_SEGMENTATION, adapters, builders, checks,
                        preprocess, resolve_data_dir)
from jaxdl.errors import DataError, DatasetNotAvailable


def get_builder(dataset_cfg) -> tfds.core.DatasetBuilder:
    """The TFDS builder, prepared. Built-in builders are prepared offline on first use; catalog ones never
    download here: if they are missing we fail at once with instructions."""
    name, data_dir = dataset_cfg.name, resolve_data_dir(dataset_cfg.data_dir)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        known = [*builders.BUILTIN, *CATALOG_CLASSIFICATION, *CATALOG_SEGMENTATION, *CATALOG_DETECTION]
        close = difflib.get_close_matches(name, known + tfds.list_builders(), n=3)
        hint = f' Did you mean {", ".join(map(repr, close))}?' if close else ''
        raise DatasetNotAvailable(f'unknown dataset {name!r}.{hint} `jaxdl datasets` lists the built-in ones.') from None
    if name in builders.BUILTIN and not builder.is_prepared():
        try:
            with contextlib.redirect_stdout(sys.stderr):  # tfds reports on stdout, which is for results
                builder.download_and_prepare()  # reads only bundled data: no network
        except FileExistsError:
            # Another process (e.g. a sibling of a multi-process run) prepared it first; tfds renames its
            # finished copy into place atomically, so theirs is complete.
            builder = tfds.builder(name, data_dir=data_dir)
    return builder


def open_split(builder, split: str) -> tf.data.Dataset:
    try:
        return builder.as_dataset(split=split, shuffle_files=False,
                                  read_config=tfds.ReadConfig(shuffle_seed=0, interleave_cycle_length=1))
    except AssertionError:  # tfds' way of saying "not prepared"
        raise DatasetNotAvailable(
            f'dataset {builder.name!r} is not prepared in {builder.data_dir_root!r} and jaxdl never downloads at '
            f'run time. On a machine with internet run `tfds build {builder.name} --data_dir DIR`, copy DIR here '
            f'and set --config.dataset.data_dir=DIR (or TFDS_DATA_DIR).') from None
    except ValueError as e:  # an unknown split name
        raise DatasetNotAvailable(f'dataset {builder.name!r} has no split {split!r}: {e}') from None


def split_size(builder, split: str) -> int:
    try:
        return builder.info.splits[split].num_examples
    except (KeyError, ValueError, TypeError):  # e.g. under tfds.testing.mock_data, where info has no splits
        return int(open_split(builder, split).reduce(0, lambda count, _: count + 1))


def epoch_seed(seed: int, epoch: tf.Tensor) -> tf.Tensor:
    """A shuffle seed per (run seed, epoch), computed inside the graph by a stateless op: every epoch is shuffled
    differently, and a resumed run redraws exactly the same order."""
    return tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed, tf.int64), epoch]),
                                       minval=0, maxval=2 ** 62, dtype=tf.int64)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    num_classes: int                   # of the task's label feature after class selection; 0 if there is none
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]  # after preprocessing


def select_classes(ds: tf.data.Dataset, label_key: str, classes) -> tf.data.Dataset:
    """Only examples whose label is in `classes`, relabelled by position in `classes` (e.g. digits 5-9 -> 0-4)."""
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(classes, tf.int64), tf.range(len(classes), dtype=tf.int64)), default_value=-1)
    relabel = lambda ex: {**ex, label_key: table.lookup(tf.cast(ex[label_key], tf.int64))}
    return ds.map(relabel).filter(lambda ex: ex[label_key] >= 0)


def first_per_class(ds: tf.data.Dataset, label_key: str, num_classes: int, per_class: int) -> tf.data.Dataset:
    """The first `per_class` examples of each class in the split's fixed order (a deterministic few-shot subset)."""
    def count(seen, ex):
        label = tf.cast(ex[label_key], tf.int32)
        keep = seen[label] < per_class
        return seen + tf.one_hot(label, num_classes, dtype=tf.int32), (keep, ex)
    def kept(keep, ex):
        return keep

    def example(keep, ex):
        return ex
    # Named functions: AutoGraph cannot tell two lambdas on one line apart and warns.
    return ds.scan(tf.zeros([num_classes], tf.int32), count).filter(kept).map(example)


class Pipeline:
    """The input pipeline of one run: decoded splits cached once, iterators made per epoch or evaluation."""

    def __init__(self, dataset_cfg, task_cfg, *, process_index: int = 0, process_count: int = 1):
        if task_cfg.name not in preprocess.PREPROCESSORS:
            raise ValueError(f'no preprocessing for task {task_cfg.name!r}')
        self.cfg = dataset_cfg
        self.task_cfg = task_cfg
        self.process_index, self.process_count = process_index, process_count
        self.builder = get_builder(dataset_cfg)
        self._check_features()
        self._decoded: dict[str, tf.data.Dataset] = {}
        self._sizes: dict[str, int] = {}

    # -- metadata
    def _check_features(self) -> None:
        """The features the task reads exist (a misnamed one fails here, not deep inside tf.data)."""
        features = self.builder.info.features
        t = self.task_cfg
        needed = {'classification': [t.label], 'regression': list(t.regression.targets),
                  'segmentation': ['segmentation_mask'], 'detection': ['objects']}[t.name]
        if self.cfg.classes or self.cfg.train_examples_per_class:
            needed.append(t.label)
        missing = [f for f in dict.fromkeys(needed) if f not in features]
        if missing:
            raise DatasetNotAvailable(f'dataset {self.cfg.name!r} has no feature {", ".join(map(repr, missing))} '
                                      f'(the task reads it); its features: {", ".join(features.keys())}')
        if t.name == 'segmentation':
            adapters.mask_source(self.cfg.name)
        if t.name == 'detection' and not all(k in features['objects'] for k in ('bbox', 'label')):
            raise DatasetNotAvailable(f'dataset {self.cfg.name!r}: detection reads objects/bbox and objects/label; '
                                      f'its objects have {", ".join(features["objects"].keys())}')
        if None in features['image'].shape[:2] and not self.cfg.image_size:
            raise DatasetNotAvailable(f'dataset {self.cfg.name!r} has images of varying size; set dataset.image_size '
                                      f'to train on batches of one size (e.g. --config.dataset.image_size=128)')
        if self.cfg.classes and t.name in ('segmentation', 'detection'):
            raise DatasetNotAvailable('dataset.classes selects image classes; segmentation and detection use every '
                                      'class of their masks and boxes')
        if self.cfg.classes:
            label = features[t.label]
            bad = [c for c in self.cfg.classes if not 0 <= c < label.num_classes]
            if bad:
                raise DatasetNotAvailable(f'dataset.classes {bad} are not class ids of {self.cfg.name!r} '
                                          f'(0..{label.num_classes - 1})')

    def _label_feature(self):
        return self.builder.info.features[self.task_cfg.label] if self.task_cfg.label in self.builder.info.features \
            else None

    def _class_names(self) -> tuple[str, ...]:
        """The task's classes: of the label feature (classification), of the mask values (segmentation, with
        background first) or of the objects (detection); () for regression."""
        if self.task_cfg.name == 'segmentation':
            return adapters.mask_source(self.cfg.name).class_names
        if self.task_cfg.name == 'detection':
            return adapters.detection_class_names(self.builder.info.features)
        label = self._label_feature()
        names = tuple(label.names) if isinstance(label, tfds.features.ClassLabel) else ()
        if self.cfg.classes:
            names = tuple(names[c] for c in self.cfg.classes)
        return names

    @property
    def spec(self) -> DatasetSpec:
        element = self._decoded_split(self.cfg.train_split).element_spec
        names = self._class_names()
        return DatasetSpec(self.cfg.name, len(names), names, tuple(element['image'].shape))

    def _filtering(self, split: str) -> bool:
        return bool(self.cfg.classes) or (bool(self.cfg.train_examples_per_class) and split == self.cfg.train_split)

    def size(self, split: str) -> int:
        if split not in self._sizes:
            self._sizes[split] = (int(self._selected(split).reduce(0, lambda count, _: count + 1))
                                  if self._filtering(split) else split_size(self.builder, split))
        return self._sizes[split]

    def steps_per_epoch(self, global_batch: int) -> int:
        steps = self.size(self.cfg.train_split) // global_batch
        if steps == 0:
            raise ValueError(f'train split {self.cfg.train_split!r} has {self.size(self.cfg.train_split)} examples, '
                             f'fewer than one batch of {global_batch}; lower train.batch_size')
        return steps

    def _local_batch(self, global_batch: int) -> int:
        if global_batch % self.process_count:
            raise ValueError(f'batch size {global_batch} does not divide by the {self.process_count} processes')
        return global_batch // self.process_count

    def _selected(self, split: str) -> tf.data.Dataset:
        """The split's raw examples after class selection and (training split only) the few-shot subset."""
        ds = open_split(self.builder, split)
        if self.task_cfg.name in ('segmentation', 'detection'):
            # Each example's name in the messages of the data-contract checks (jaxdl.data.checks): its position
            # in the (sub)split it was read from, e.g. "voc train example 17".
            prefix = f'{self.cfg.name} {split} example '
            ds = ds.enumerate().map(
                lambda i, ex: {**ex, 'example_id': tf.strings.join([prefix, tf.strings.as_string(i)])})
        label, classes = self.task_cfg.label, tuple(self.cfg.classes)
        if classes:
            ds = select_classes(ds, label, classes)
        if self.cfg.train_examples_per_class and split == self.cfg.train_split:
            num_classes = len(classes) or self._label_feature().num_classes
            ds = first_per_class(ds, label, num_classes, self.cfg.train_examples_per_class)
        return ds

    def _decoded_split(self, split: str) -> tf.data.Dataset:
        """Decoded and normalised examples; cached in memory, shared by every epoch's iterator."""
        if split not in self._decoded:
            fn = preprocess.PREPROCESSORS[self.task_cfg.name]
            num_classes = len(self._class_names())
            ds = self._selected(split).map(lambda ex: fn(ex, self.cfg, self.task_cfg, num_classes),
                                           num_parallel_calls=tf.data.AUTOTUNE)
            self._decoded[split] = ds.cache() if self.cfg.cache else ds
        return self._decoded[split]

    # -- training
    def train_batches(self, *, seed: int, global_batch: int, start_step: int = 0) -> Iterator[dict]:
        """This process's rows of every global batch from step `start_step` on, epoch after epoch, endlessly.

        One tf.data pipeline serves the whole run (building one per epoch costs more than a small epoch's
        steps): a flat_map over epochs, each shuffled with its own seed. Resuming at step s skips the s % epoch
        batches of its epoch already seen; augmentation is seeded by (epoch seed, position), so it is redrawn
        identically too."""
        split = self.cfg.train_split
        local = self._local_batch(global_batch)
        examples_per_epoch = self.steps_per_epoch(global_batch) * global_batch
        first_epoch, first_batch = divmod(start_step, self.steps_per_epoch(global_batch))
        decoded = self._decoded_split(split)
        buffer = self.cfg.shuffle_buffer or self.size(split)

        augmenting = preprocess.needs_augmentation(self.cfg.augment)
        augment = preprocess.AUGMENTERS[self.task_cfg.name]

        def epoch(e):
            e_seed = epoch_seed(seed, e)
            examples = decoded.shuffle(buffer, seed=e_seed, reshuffle_each_iteration=False).take(examples_per_epoch)
            if augmenting:  # seeded by (epoch seed, position in the epoch): redrawn identically on resume
                examples = examples.enumerate().map(
                    lambda i, ex: augment(ex, tf.stack([e_seed, i]), self.cfg.augment, self.task_cfg),
                    num_parallel_calls=tf.data.AUTOTUNE)
            # An epoch is a whole number of batches, so each is batched here and only whole batches pass the
            # later stages (each per-example stage costs ~1 us; benchmarks/README.md).
            return examples.batch(global_batch, drop_remainder=True)

        # Resuming skips the batches of its epoch already trained on (augmented too: at most one epoch's work).
        ds = tf.data.Dataset.range(first_epoch, 2 ** 62).flat_map(epoch).skip(first_batch)
        batches = _reporting_data_errors(ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator())
        return _process_rows(batches, self.process_index * local, local)

    # -- evaluation
    def _process_subsplits(self, split: str) -> list[str]:
        if self.process_count == 1:
            return [split]
        return tfds.even_splits(split, n=self.process_count, drop_remainder=False)

    def num_eval_batches(self, split: str, global_batch: int) -> int:
        local = self._local_batch(global_batch)
        largest = max(self.size(s) for s in self._process_subsplits(split))
        return max(1, math.ceil(largest / local))

    def eval_batches(self, split: str, global_batch: int) -> Iterator[dict]:
        """Every example of this process's share once, the last batch padded and marked invalid."""
        local = self._local_batch(global_batch)
        subsplit = self._process_subsplits(split)[self.process_index]
        total = self.num_eval_batches(split, global_batch) * local
        ds = self._decoded_split(subsplit).map(lambda ex: {**ex, 'valid': tf.constant(True)})
        padding = total - self.size(subsplit)
        if padding:
            blank = tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), ds.element_spec)
            ds = ds.concatenate(tf.data.Dataset.from_tensors(blank).repeat(padding))
        batches = ds.batch(local, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
        return _reporting_data_errors(batches.as_numpy_iterator())


def _process_rows(batches: Iterator[dict], start: int, rows: int) -> Iterator[dict]:
    """This process's rows of each global batch, all valid. Sliced on the host (numpy views): a tf.data map for
    it cost ~100 us of CPU a batch, 1-2% of a small model's step on two cores."""
    for batch in batches:
        yield {**{k: v[start:start + rows] for k, v in batch.items()}, 'valid': np.ones(rows, bool)}


def _reporting_data_errors(batches: Iterator[dict]) -> Iterator[dict]:
    """The batches, with a failed data-contract check (a bad box, mask or label) raised as a DataError that names
    the example and field instead of a TensorFlow op trace."""
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except tf.errors.InvalidArgumentError as e:
            raise DataError(checks.message_of(e)) from None
        yield batch
