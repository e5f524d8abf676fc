"""The stream source (`StreamSource`): examples read by index, decoded and augmented per step, nothing cached.

Training: for every step, `sampling.IndexSampler` gives this process's rows of the global batch (indices and
their positions in the epoch); `records.SplitRecords.read` fetches just those serialized examples; tf.data parses,
decodes (only the crop window of a JPEG, `jpeg.py`), converts to the data contract and augments them in parallel.
Memory is the prefetch buffers, whatever the dataset's size; a process reads only its own examples; a resumed run
starts reading at its step. Augmentation is seeded by (epoch seed, position in the epoch), as on the in-memory path.

Evaluation: each process reads its contiguous share of the split in order (the shares `tfds.even_splits` makes),
padded to the same number of batches, padding marked in `valid`.

A corrupt image (one that does not decode) stops the run with a `DataError` naming the example and the record file
it is in, or, with `dataset.skip_corrupt_images`, becomes a blank example marked invalid: the step's loss and the
evaluation's sums leave it out, the batch keeps its shape, and the loop counts it for summary.json.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxdl.data import checks, jpeg, preprocess
from jaxdl.data.model_input import ImageFormat
from jaxdl.data.records import SplitRecords
from jaxdl.data.sampling import IndexSampler, epoch_seed
from jaxdl.data.source import SplitReading


@dataclasses.dataclass(frozen=True)
class ExampleReader:
    """Serialized example -> the data contract: parse, decode (a crop window only, where a JPEG transform is
    set), convert for the task, augment (training), mark valid."""

    features: tfds.features.FeaturesDict
    to_contract: Callable  # the task's data kind's converter (jaxdl.data.kinds)
    augment: Callable | None  # (example, seed) -> example; None: no augmentation
    rand_augment: Callable | None  # (converted example, seed) -> example: RandAugment; None: off
    crop: jpeg.RandomResizedCrop | None  # None: decode the whole image
    channels: int
    example_prefix: str  # e.g. 'jpeg_shapes train example ', for the data-contract messages
    # > 0: the crop is batched into the corner of a canvas of this side, with its extent as 'image_window', and
    # the steps resize it on the device (`model_input.resize_windows`); 0: resized here
    canvas: int = 0
    # With a canvas: the flip is only drawn here ('image_flip', `preprocess.flip_draw`); the steps mirror the
    # resized image (mirroring the crop here cost a tenth of the small-JPEG pipeline: benchmarks/README.md)
    flip_on_device: bool = False

    def __call__(self, record: tf.Tensor, index: tf.Tensor, seed: tf.Tensor) -> dict:
        if self.crop is not None:
            example = self.features.deserialize_example(record, decoders={'image': tfds.decode.SkipDecoding()})
            crop_seed = tf.random.experimental.stateless_fold_in(seed, 1)  # apart from the augmentation's draws
            example = {**example, 'image': jpeg.decode_window(example['image'], self.crop, crop_seed, self.channels)}
            # The window's augmentation (a flip: the random-resized crop is its translation) before it is resized:
            # on the small uint8 window rather than the model-sized float image, 15% of the pipeline's time.
            if self.augment is not None:
                example = self.augment(example, seed)
            if self.canvas:
                image, window = preprocess.fit_within(example['image'], self.canvas)
                out = self.to_contract({**example, 'image': image, 'example_id': self._example_id(index)})
                out = {**out, 'image_window': window}
                if self.flip_on_device:
                    out['image_flip'] = preprocess.flip_draw(seed)
            else:
                out = self.to_contract({**example, 'example_id': self._example_id(index)})
        else:
            out = self.to_contract({**self.features.deserialize_example(record), 'example_id': self._example_id(index)})
            if self.augment is not None:
                out = self.augment(out, seed)
        if self.rand_augment is not None:  # on the model-sized image, as on the in-memory path
            out = self.rand_augment(out, seed)
        return {**out, 'valid': tf.constant(True)}

    def _example_id(self, index: tf.Tensor) -> tf.Tensor:
        return tf.strings.join([self.example_prefix, tf.strings.as_string(index)])


def _read(records: SplitRecords, indices: tf.Tensor) -> tf.Tensor:
    serialized = tf.numpy_function(records.read, [indices], tf.string, stateful=False)
    return tf.ensure_shape(serialized, indices.shape)


def _decoded(ds: tf.data.Dataset, reader: ExampleReader, skip_corrupt: bool) -> tf.data.Dataset:
    """Elements (record, index, seed) -> examples, in order. With `skip_corrupt`, an example whose decoding
    fails becomes a blank marked invalid (each decoded in a one-element dataset that drops its error, then
    padded back to one element)."""
    if not skip_corrupt:
        return ds.map(reader, num_parallel_calls=tf.data.AUTOTUNE)
    blank = _blank(ds.take(1).map(reader).element_spec)

    def one(record, index, seed):
        return (
            tf.data.Dataset.from_tensors((record, index, seed))
            .map(reader)
            .ignore_errors()
            .concatenate(tf.data.Dataset.from_tensors(blank))
            .take(1)
        )

    return ds.interleave(one, cycle_length=16, block_length=1, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def in_order(records: SplitRecords, features: tfds.features.FeaturesDict, chunk: int = 64) -> tf.data.Dataset:
    """Every example of the split in stored order, decoded as `as_dataset` would (the in-memory path's reader for
    ArrayRecord files)."""
    ds = tf.data.Dataset.range(len(records)).batch(chunk)
    ds = ds.map(lambda indices: _read(records, indices), num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    return ds.map(features.deserialize_example, num_parallel_calls=tf.data.AUTOTUNE)


def train_dataset(
    records: SplitRecords,
    reader: ExampleReader,
    sampler: IndexSampler,
    *,
    start_step: int,
    first_row: int,
    rows: int,
    skip_corrupt: bool,
) -> tf.data.Dataset:
    """This process's rows of every global batch from `start_step` on, endlessly, as batches of `rows`."""

    def step_records(step):
        chosen = sampler.step_indices(step, first_row, rows)
        e_seed = epoch_seed(sampler.seed, chosen['epoch'])
        seeds = tf.stack([tf.fill([rows], e_seed), chosen['position']], axis=1)
        return _read(records, chosen['index']), chosen['index'], seeds

    steps = tf.data.Dataset.range(start_step, 2**62)
    ds = steps.map(step_records, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    examples = _decoded(ds, reader, skip_corrupt)
    if reader.canvas:  # each crop into the corner of its canvas, zeros around it, as the batch is copied together
        shapes = {
            k: [reader.canvas, reader.canvas, reader.channels] if k == 'image' else s.shape
            for k, s in examples.element_spec.items()
        }
        return examples.padded_batch(rows, shapes, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return examples.batch(rows, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(
    records: SplitRecords, reader: ExampleReader, *, start: int, stop: int, rows: int, batches: int, skip_corrupt: bool
) -> tf.data.Dataset:
    """Examples [start, stop) of the split in order, in `batches` batches of `rows`, the padding marked invalid."""
    ds = tf.data.Dataset.range(start, stop).batch(rows)
    ds = ds.map(lambda indices: (_read(records, indices), indices), num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    ds = _decoded(ds.map(lambda record, index: (record, index, tf.zeros([2], tf.int64))), reader, skip_corrupt)
    return padded(ds, batches * rows - (stop - start)).batch(rows, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _blank(spec) -> dict:
    return tf.nest.map_structure(lambda s: tf.zeros([d or 0 for d in s.shape], s.dtype), spec)


def padded(ds: tf.data.Dataset, count: int) -> tf.data.Dataset:
    """`ds` followed by `count` all-zero examples (`valid` False): evaluation's padding, on both input paths."""
    return ds.concatenate(tf.data.Dataset.from_tensors(_blank(ds.element_spec)).repeat(count)) if count else ds


def naming_corrupt_examples(
    batches: Iterator[dict], records: SplitRecords, reader: ExampleReader, indices_of_batch: Callable[[int], list[int]]
) -> Iterator[dict]:
    """The batches, with a decoding failure raised as a DataError naming the example(s) of the failed batch that
    do not decode, and the record file each is in. `indices_of_batch(k)`: the example indices of the k-th batch
    this iterator yields (found again only after a failure, by decoding each eagerly)."""
    return checks.reporting_data_errors(
        batches, lambda error, k: _describe_failure(error, records, reader, indices_of_batch(k))
    )


def _describe_failure(
    error: tf.errors.InvalidArgumentError, records: SplitRecords, reader: ExampleReader, indices: list[int]
) -> str:
    if 'assertion failed' in error.message:  # a data-contract check (box, mask, label): it names the example
        return checks.message_of(error)
    bad = []
    for index, record in zip(indices, records.read(np.asarray(indices, np.int64))):
        try:
            reader(tf.constant(record), tf.constant(index, tf.int64), tf.zeros([2], tf.int64))
        except (tf.errors.InvalidArgumentError, ValueError) as e:
            why = re.sub(r'\{\{.*?\}\}\s*', '', getattr(e, 'message', str(e))).split(' [Op:')[0]
            bad.append((index, why.splitlines()[0][:160].rstrip('.')))
    if not bad:
        return f'{records.dataset} {records.split}: an example does not decode: {error.message.splitlines()[0]}'
    named = '; '.join(f'example {i} (its index in the split; {records.locate(i)}): {why}' for i, why in bad[:5])
    return (
        f'{records.dataset} {records.split}: {len(bad)} example(s) of this batch do not decode: {named}. '
        f'Repair or remove them and prepare the dataset again, or set dataset.skip_corrupt_images=True to '
        f'leave them out (the count goes to summary.json).'
    )


class StreamSource:
    name: ClassVar[str] = 'stream'

    def __init__(self, reading: SplitReading):
        self.reading = reading
        self._records: dict[str, SplitRecords] = {}

    def records(self, split: str) -> SplitRecords:
        """The split's record files, opened (and checked) once."""
        if split not in self._records:
            self._records[split] = SplitRecords(self.reading.builder, split)
        return self._records[split]

    def size(self, split: str) -> int:
        return len(self.records(split))

    def fingerprints(self, splits) -> dict[str, str]:
        return {s: self.records(s).fingerprint() for s in splits}

    def _share(self, split: str) -> tuple[int, int]:
        """This process's examples [start, stop) of `split`: the shares tfds.even_splits makes."""
        n, p, i = self.size(split), self.reading.process_count, self.reading.process_index
        start = i * (n // p) + min(i, n % p)
        return start, start + n // p + (1 if i < n % p else 0)

    def largest_share(self, split: str) -> int:
        return math.ceil(self.size(split) / self.reading.process_count)

    def reader(self, split: str, *, train: bool) -> ExampleReader:
        cfg, reading = self.reading.cfg, self.reading
        image_format, crop, canvas, augment = ImageFormat.of(cfg), None, 0, train and reading.augmentation.active
        if train and cfg.augment.random_resized_crop:  # the window replaces the centre crop
            crop = jpeg.RandomResizedCrop(tuple(cfg.augment.crop_scale), tuple(cfg.augment.crop_ratio))
            image_format = dataclasses.replace(image_format, center_crop=0.0)
            if reading.uint8_images and not reading.randaugment.active:  # RandAugment's ops need the model-sized image
                # the resize to the model's size is the steps' (benchmarks/README.md: it cost the host twice the
                # decode of a small JPEG); here each crop is only decoded, into a canvas of that size
                canvas, image_format = image_format.size, dataclasses.replace(image_format, size=0)
        flip_on_device = bool(canvas) and augment and reading.augmentation.flip_only
        return ExampleReader(
            reading.builder.info.features,
            reading.converter(image_format),
            reading.augment if augment and not flip_on_device else None,
            reading.rand_augment if train and reading.randaugment.active else None,
            crop,
            reading.image_shape[2],
            f'{cfg.name} {split} example ',
            canvas,
            flip_on_device,
        )

    def sampler(self, seed: int, global_batch: int) -> IndexSampler:
        size = self.size(self.reading.cfg.train_split)
        return IndexSampler(seed, size, global_batch, size // global_batch)

    def train_batches(
        self, *, seed: int, global_batch: int, steps_per_epoch: int, start_step: int, first_row: int, rows: int
    ) -> Iterator[dict]:
        split = self.reading.cfg.train_split
        sampler = IndexSampler(seed, self.size(split), global_batch, steps_per_epoch)
        records, reader = self.records(split), self.reader(split, train=True)
        ds = train_dataset(
            records,
            reader,
            sampler,
            start_step=start_step,
            first_row=first_row,
            rows=rows,
            skip_corrupt=self.reading.cfg.skip_corrupt_images,
        )
        rows_of = lambda k: [int(i) for i in sampler.step_indices(start_step + k, first_row, rows)['index']]
        return naming_corrupt_examples(ds.as_numpy_iterator(), records, reader, rows_of)

    def eval_pass(self, split: str, *, rows: int, batches: int) -> Callable[[], Iterator[dict]]:
        start, stop = self._share(split)
        records, reader = self.records(split), self.reader(split, train=False)
        ds = eval_dataset(
            records,
            reader,
            start=start,
            stop=stop,
            rows=rows,
            batches=batches,
            skip_corrupt=self.reading.cfg.skip_corrupt_images,
        )
        rows_of = lambda k: list(range(start + k * rows, min(start + (k + 1) * rows, stop)))
        return lambda: naming_corrupt_examples(ds.as_numpy_iterator(), records, reader, rows_of)
