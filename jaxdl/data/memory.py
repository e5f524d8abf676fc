"""The in-memory source: each split read whole, decoded once and cached, shuffled per epoch in tf.data.

Training: each process reads the whole split in the same seeded, epoch-dependent order, batches it by the *global*
batch and keeps its own rows, so the global batches (and so the parameters) do not depend on the process count.
Batches drop the remainder and are all valid. A resumed epoch skips the batches already seen.

Evaluation: each process reads its own even share of the split (`tfds.even_splits`), padded to the same number of
batches as every other process, padding marked in `valid`, so every example is counted exactly once.

Only this source selects examples (`dataset.classes`, `dataset.train_examples_per_class`): it reads a split in its
fixed order, which a selection needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxdl.data import checks, prepare_command, streaming
from jaxdl.data.kinds import class_label
from jaxdl.data.model_input import ImageFormat
from jaxdl.data.records import SplitRecords, is_random_access
from jaxdl.data.sampling import epoch_seed
from jaxdl.data.source import SplitReading
from jaxdl.errors import DatasetNotAvailable


def open_split(builder, split: str) -> tf.data.Dataset:
    """The split's examples in their stored order, decoded (ArrayRecord files through their records, which
    `as_dataset` does not read)."""
    if is_random_access(builder):
        return streaming.in_order(SplitRecords(builder, split), builder.info.features)
    try:
        return builder.as_dataset(
            split=split, shuffle_files=False, read_config=tfds.ReadConfig(shuffle_seed=0, interleave_cycle_length=1)
        )
    except AssertionError:  # tfds' way of saying "not prepared"
        raise DatasetNotAvailable(
            f'dataset {builder.name!r} is not prepared in {builder.data_dir_root} and jaxdl never downloads at '
            f'run time. On a machine with internet run `{prepare_command(builder.name, "DIR")}`, copy DIR here '
            f'and set --config.dataset.data_dir=DIR (or TFDS_DATA_DIR).'
        ) from None
    except ValueError as e:  # an unknown split name
        raise DatasetNotAvailable(f'dataset {builder.name!r} has no split {split!r}: {e}') from None


def split_size(builder, split: str) -> int:
    try:
        return builder.info.splits[split].num_examples
    except (KeyError, ValueError, TypeError):  # e.g. under tfds.testing.mock_data, where info has no splits
        return int(open_split(builder, split).reduce(0, lambda count, _: count + 1))


def select_classes(ds: tf.data.Dataset, label_key: str, classes) -> tf.data.Dataset:
    """Only examples whose label is in `classes`, relabelled by position in `classes` (e.g. digits 5-9 -> 0-4)."""
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(classes, tf.int64), tf.range(len(classes), dtype=tf.int64)),
        default_value=-1,
    )
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


class InMemorySource:
    name: ClassVar[str] = 'memory'

    def __init__(self, reading: SplitReading):
        self.reading = reading
        self._opened: dict[str, tf.data.Dataset] = {}
        self._decoded: dict[str, tf.data.Dataset] = {}
        self._sizes: dict[str, int] = {}

    def _open(self, split: str) -> tf.data.Dataset:
        """The split's reader, opened once (fit sizes every split it reads before anything else starts)."""
        if split not in self._opened:
            self._opened[split] = open_split(self.reading.builder, split)
        return self._opened[split]

    def _filtering(self, split: str) -> bool:
        cfg = self.reading.cfg
        return bool(cfg.classes) or (bool(cfg.train_examples_per_class) and split == cfg.train_split)

    def size(self, split: str) -> int:
        self._open(split)
        if split not in self._sizes:
            self._sizes[split] = (
                int(self._selected(split).reduce(0, lambda count, _: count + 1))
                if self._filtering(split)
                else split_size(self.reading.builder, split)
            )
        return self._sizes[split]

    def fingerprints(self, splits) -> None:
        return None

    def _process_subsplits(self, split: str) -> list[str]:
        if self.reading.process_count == 1:
            return [split]
        return tfds.even_splits(split, n=self.reading.process_count, drop_remainder=False)

    def largest_share(self, split: str) -> int:
        return max(self.size(s) for s in self._process_subsplits(split))

    def _selected(self, split: str) -> tf.data.Dataset:
        """The split's raw examples after class selection and (training split only) the few-shot subset."""
        ds, cfg, kind = self._open(split), self.reading.cfg, self.reading.kind
        if kind.names_examples:
            # Each example's name in the messages of the data-contract checks (jaxdl.data.checks): its position
            # in the (sub)split it was read from, e.g. "voc train example 17".
            prefix = f'{cfg.name} {split} example '
            ds = ds.enumerate().map(
                lambda i, ex: {**ex, 'example_id': tf.strings.join([prefix, tf.strings.as_string(i)])}
            )
        label, classes = cfg.label, tuple(cfg.classes)
        if classes:
            ds = select_classes(ds, label, classes)
        if cfg.train_examples_per_class and split == cfg.train_split:
            num_classes = len(classes) or class_label(self.reading.builder, cfg, kind.name).num_classes
            ds = first_per_class(ds, label, num_classes, cfg.train_examples_per_class)
        return ds

    def _decoded_split(self, split: str) -> tf.data.Dataset:
        """Decoded and normalised examples; cached in memory, shared by every epoch's iterator."""
        if split not in self._decoded:
            convert = self.reading.converter(ImageFormat.of(self.reading.cfg))
            ds = self._selected(split).map(convert, num_parallel_calls=tf.data.AUTOTUNE)
            self._decoded[split] = ds.cache() if self.reading.cfg.cache else ds
        return self._decoded[split]

    def train_batches(
        self, *, seed: int, global_batch: int, steps_per_epoch: int, start_step: int, first_row: int, rows: int
    ) -> Iterator[dict]:
        """One tf.data pipeline serves the whole run (building one per epoch costs more than a small epoch's
        steps): a flat_map over epochs, each shuffled with its own seed. Resuming at step s skips the s % epoch
        batches of its epoch already seen; augmentation is seeded by (epoch seed, position), so it is redrawn
        identically too."""
        split = self.reading.cfg.train_split
        examples_per_epoch = steps_per_epoch * global_batch
        first_epoch, first_batch = divmod(start_step, steps_per_epoch)
        decoded = self._decoded_split(split)
        buffer = self.reading.cfg.shuffle_buffer or self.size(split)
        reading = self.reading

        def epoch(e):
            e_seed = epoch_seed(seed, e)
            examples = decoded.shuffle(buffer, seed=e_seed, reshuffle_each_iteration=False).take(examples_per_epoch)
            if reading.augments:  # seeded by (epoch seed, position): redrawn identically on resume
                examples = examples.enumerate().map(
                    lambda i, ex: reading.augmenting(ex, tf.stack([e_seed, i])), num_parallel_calls=tf.data.AUTOTUNE
                )
            # An epoch is a whole number of batches, so each is batched here and only whole batches pass the
            # later stages (each per-example stage costs ~1 us; benchmarks/README.md).
            return examples.batch(global_batch, drop_remainder=True)

        # Resuming skips the batches of its epoch already trained on (augmented too: at most one epoch's work).
        ds = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch).skip(first_batch)
        batches = checks.reporting_data_errors(ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator())
        return _process_rows(batches, first_row, rows)

    def eval_pass(self, split: str, *, rows: int, batches: int) -> Callable[[], Iterator[dict]]:
        subsplit = self._process_subsplits(split)[self.reading.process_index]
        ds = self._decoded_split(subsplit).map(lambda ex: {**ex, 'valid': tf.constant(True)})
        ds = streaming.padded(ds, batches * rows - self.size(subsplit))
        ds = ds.batch(rows, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
        return lambda: checks.reporting_data_errors(ds.as_numpy_iterator())


def _process_rows(batches: Iterator[dict], start: int, rows: int) -> Iterator[dict]:
    """This process's rows of each global batch, all valid. Sliced on the host (numpy views): a tf.data map for
    it cost ~100 us of CPU a batch, 1-2% of a small model's step on two cores."""
    for batch in batches:
        yield {**{k: v[start : start + rows] for k, v in batch.items()}, 'valid': np.ones(rows, bool)}
