"""tfds -> tf.data -> numpy batches that follow the data contract of DESIGN.md.

Two ways to read a split, chosen per run by `dataset.source` (`choose_source`): the in-memory path below, and the
streaming path (`streaming.py`: examples read by index, each process only its own) for datasets too large to
cache. Both keep the invariants: global batches independent of the process count, exact resume, every
evaluation example counted once.

In memory: each process reads the whole split in the same seeded, epoch-dependent order, batches it by the
*global* batch and keeps its own rows, so the global batches (and so the parameters) do not depend on the
process count. Batches drop the remainder and are all valid. A resumed epoch skips the batches already seen.

Evaluation: each process reads its own even share of the split (`tfds.even_splits`), pads to the same number
of batches as every other process and marks padding in `valid`, so every example is counted exactly once.
"""
from __future__ import annotations

import ctypes
import dataclasses
import difflib
import math
import sys
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxdl.data import CATALOG, checks, jpeg, prepare_command, preprocess, quiet_tfds, resolve_data_dir, streaming
from jaxdl.data.kinds import class_label, data_kind
from jaxdl.data.records import SplitRecords, array_record_advice, is_random_access, preparable
from jaxdl.data.sampling import IndexSampler, epoch_seed
from jaxdl.errors import ConfigError, DatasetNotAvailable
from jaxdl.registry import BUILDERS, is_import_path


def get_builder(dataset_cfg) -> tfds.core.DatasetBuilder:
    """The prepared TFDS builder `dataset.name` names: a built-in (prepared offline on first use), `folder:PATH`
    (an image folder, prepared once into the data dir), an import path to a user's TFDS builder class (prepared
    on first use by its own code), or a TFDS name already prepared in the data dir (a catalog dataset, or arrays
    stored by jaxdl.data.from_arrays). Catalog datasets are never downloaded here: missing, they fail at once with
    instructions."""
    name, data_dir = dataset_cfg.name, resolve_data_dir(dataset_cfg.data_dir)
    if name.startswith('folder:'):
        from jaxdl.data import folder
        return folder.prepared_builder(name[len('folder:'):], dataset_cfg, data_dir)
    if name in BUILDERS.builtin_names() or is_import_path(name):
        builder_class = BUILDERS.resolve(name)
        if not (isinstance(builder_class, type) and issubclass(builder_class, tfds.core.DatasetBuilder)):
            raise ConfigError(f"config key 'dataset.name': {name!r} is not a TFDS DatasetBuilder class")
        builder = builder_class(data_dir=data_dir)
        if not builder.is_prepared():
            prepare(builder, 'offline, once' if name in BUILDERS.builtin_names() else 'by its own builder, once')
            builder = builder_class(data_dir=data_dir)
        return builder
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        known = [*BUILDERS.builtin_names(), *CATALOG]
        close = difflib.get_close_matches(name, known + tfds.list_builders(), n=3)
        hint = f' Did you mean {", ".join(map(repr, close))}?' if close else ''
        raise DatasetNotAvailable(f'unknown dataset {name!r}.{hint} `jaxdl datasets` lists the built-in ones; an '
                                  f"image folder is 'folder:PATH', your own TFDS builder 'package.module:Class'.") from None


def prepare_dataset(name: str, data_dir: str, *, array_record: bool = False) -> tfds.core.DatasetBuilder:
    """`jaxdl prepare`: a built-in, a user's builder class or a catalog name prepared into `data_dir` (a catalog
    dataset downloads: run it on a machine with internet), as ArrayRecord files (`array_record`) for the streaming
    path or TFDS's default TFRecord. A version already prepared there in another format is an error: tfds keeps
    one format per prepared version, so the other format goes into a data dir of its own."""
    file_format = 'array_record' if array_record else None
    if not preparable(name):
        raise DatasetNotAvailable(f'{name!r} is neither a built-in (`jaxdl datasets`), a TFDS builder '
                                  f"class 'package.module:Class' nor a TFDS catalog name; an image folder or arrays "
                                  f'are prepared by the run that names them')
    if name in BUILDERS.builtin_names() or is_import_path(name):
        builder_class = BUILDERS.resolve(name)
        make = lambda fmt: builder_class(data_dir=data_dir, file_format=fmt)
    else:
        make = lambda fmt: tfds.builder(name, data_dir=data_dir, file_format=fmt)
    builder = make(None)
    if builder.is_prepared():
        wanted = tfds.core.file_adapters.FileFormat('array_record' if array_record else 'tfrecord')
        if builder.info.file_format != wanted:
            raise DatasetNotAvailable(
                f'{name!r} is already prepared in {data_dir} as {builder.info.file_format.value}; prepare it as '
                f'{wanted.value} into another data dir (`{prepare_command(name, f"{data_dir}-{wanted.value}", array_record=array_record)}`)')
        return builder
    builder = make(file_format)
    prepare(builder, 'once' + (', as ArrayRecord' if array_record else ''))
    return make(file_format)


def prepare(builder: tfds.core.DatasetBuilder, how: str) -> None:
    """Prepares a dataset whose code needs no network, saying so in one line on stderr (tfds' own progress bars
    and "Downloading ..." messages would say something else, on stdout, which is for results)."""
    print(f'preparing {builder.name} ({how}) in {builder.data_dir_root}', file=sys.stderr, flush=True)
    try:
        with quiet_tfds():
            builder.download_and_prepare()
    except FileExistsError:
        # Another process (a sibling of a multi-process run, a parallel test) prepared it first; tfds renames its
        # finished copy into place atomically, so theirs is complete.
        pass


def open_split(builder, split: str) -> tf.data.Dataset:
    """The split's examples in their stored order, decoded (ArrayRecord files through their records, which
    `as_dataset` does not read)."""
    if is_random_access(builder):
        return streaming.in_order(SplitRecords(builder, split), builder.info.features)
    try:
        return builder.as_dataset(split=split, shuffle_files=False,
                                  read_config=tfds.ReadConfig(shuffle_seed=0, interleave_cycle_length=1))
    except AssertionError:  # tfds' way of saying "not prepared"
        raise DatasetNotAvailable(
            f'dataset {builder.name!r} is not prepared in {builder.data_dir_root} and jaxdl never downloads at '
            f'run time. On a machine with internet run `{prepare_command(builder.name, "DIR")}`, copy DIR here '
            f'and set --config.dataset.data_dir=DIR (or TFDS_DATA_DIR).') from None
    except ValueError as e:  # an unknown split name
        raise DatasetNotAvailable(f'dataset {builder.name!r} has no split {split!r}: {e}') from None


def split_size(builder, split: str) -> int:
    try:
        return builder.info.splits[split].num_examples
    except (KeyError, ValueError, TypeError):  # e.g. under tfds.testing.mock_data, where info has no splits
        return int(open_split(builder, split).reduce(0, lambda count, _: count + 1))


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    num_classes: int                   # of the task's classes (label, mask or objects); 0 if there are none
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


def image_shape(builder, dataset_cfg) -> tuple[int, int, int]:
    """The model input's shape: the dataset's images, resized to dataset.image_size if set."""
    height, width, channels = builder.info.features['image'].shape
    if dataset_cfg.image_size:
        return dataset_cfg.image_size, dataset_cfg.image_size, channels
    if height is None or width is None:
        raise DatasetNotAvailable(f'dataset {dataset_cfg.name!r} has images of varying size; set dataset.image_size '
                                  f'to train on batches of one size (e.g. --config.dataset.image_size=128)')
    return height, width, channels


def choose_source(dataset_cfg, builder, train_size: int, shape: tuple[int, int, int]) -> str:
    """'memory' or 'stream' for `dataset.source` ('auto' decides by what the in-memory path would hold: the
    decoded float32 split when cached or shuffled whole, else the shuffle buffer). Settings only the streaming
    path implements, and a split too large for memory stored where it cannot be read by index, are errors that
    say what to change."""
    d = dataset_cfg
    streaming_only = [key for key, on in (('dataset.augment.random_resized_crop', d.augment.random_resized_crop),
                                          ('dataset.skip_corrupt_images', d.skip_corrupt_images)) if on]
    filtering = [key for key, on in (('dataset.classes', d.classes),
                                     ('dataset.train_examples_per_class', d.train_examples_per_class)) if on]
    held = train_size if d.cache or not d.shuffle_buffer else min(d.shuffle_buffer, train_size)
    held_mb = held * math.prod(shape) * 4 / 2 ** 20
    if d.source == 'memory' or (d.source == 'auto' and not streaming_only and (filtering or held_mb <= d.memory_limit_mb)):
        if streaming_only:
            raise ConfigError(f"config key {streaming_only[0]!r}: is implemented by the streaming path; set "
                              f"dataset.source='stream' or 'auto' (the dataset must be stored as ArrayRecord)")
        return 'memory'
    if filtering:
        raise ConfigError(f"config key {filtering[0]!r}: selects examples on the in-memory path only; set "
                          f"dataset.source='memory'")
    if not is_random_access(builder):
        why = (f'it would hold {held_mb:,.0f} MB in memory (dataset.memory_limit_mb={d.memory_limit_mb})'
               if not streaming_only else f'{streaming_only[0]} needs the streaming path')
        raise ConfigError(
            f"dataset {d.name!r} is stored as {builder.info.file_format.value}, which cannot be read by index, and "
            f"{why}. To stream it, {array_record_advice(d.name, builder)}set dataset.source='memory' with "
            f"dataset.cache=False and a dataset.shuffle_buffer (e.g. 10000) to bound its memory.")
    memory_only = [key for key, on in (('dataset.shuffle_buffer', d.shuffle_buffer), ('dataset.cache', not d.cache))
                   if on]
    if memory_only:
        raise ConfigError(f"config key {memory_only[0]!r}: applies to the in-memory path only, and this run streams "
                          f"(dataset.source={d.source!r}): the stream shuffles every epoch whole, by index, and "
                          f"caches nothing. Leave it at its default, or set dataset.source='memory'")
    return 'stream'


class Pipeline:
    """The input pipeline of one run: decoded splits cached once, iterators made per epoch or evaluation.

    `task` is the run's task (jaxdl.tasks.Task): its `data_kind` says which targets to prepare, with its own
    settings. `builder` (default: the one `dataset_cfg` names) must be prepared."""

    def __init__(self, dataset_cfg, task, *, builder=None, process_index: int = 0, process_count: int = 1):
        self.cfg = dataset_cfg
        self.task = task
        self.kind = data_kind(task)
        self.process_index, self.process_count = process_index, process_count
        self.builder = builder if builder is not None else get_builder(dataset_cfg)
        self.augmentation = preprocess.Augmentation.of(dataset_cfg.augment)
        self._check()
        self._opened: dict[str, tf.data.Dataset] = {}
        self._decoded: dict[str, tf.data.Dataset] = {}
        self._sizes: dict[str, int] = {}
        self._records: dict[str, SplitRecords] = {}
        self._eval_passes: dict[tuple[str, int], Callable[[], Iterator[dict]]] = {}
        self.streaming = choose_source(dataset_cfg, self.builder, split_size(self.builder, dataset_cfg.train_split),
                                       image_shape(self.builder, dataset_cfg)) == 'stream'

    @classmethod
    def for_config(cls, config, *, process_index: int = 0, process_count: int = 1) -> 'Pipeline':
        """The pipeline of a run's config, with the run's task built for the dataset's classes."""
        from jaxdl.tasks import build_task, task_class
        builder = get_builder(config.dataset)
        task = build_task(config.task, data_kind(task_class(config.task).data_kind).class_names(builder, config.dataset))
        return cls(config.dataset, task, builder=builder, process_index=process_index, process_count=process_count)

    # -- metadata
    def _check(self) -> None:
        """The features the task reads exist and the augmentation keeps its targets (a misnamed feature fails
        here, not deep inside tf.data)."""
        features, kind = self.builder.info.features, self.kind
        needed = list(kind.features(self.task, self.cfg))
        if self.cfg.classes or self.cfg.train_examples_per_class:
            needed.append(self.cfg.label)
        missing = [f for f in dict.fromkeys(['image', *needed]) if f not in features]
        if missing:
            raise DatasetNotAvailable(f'dataset {self.cfg.name!r} has no feature {", ".join(map(repr, missing))} '
                                      f'(the {kind.name} task reads it); its features: {", ".join(features.keys())}')
        kind.check(features, self.task, self.cfg)
        image_shape(self.builder, self.cfg)
        if (self.cfg.classes or self.cfg.train_examples_per_class) and not kind.selects_by_label:
            key = 'dataset.classes' if self.cfg.classes else 'dataset.train_examples_per_class'
            raise DatasetNotAvailable(f'{key} selects images by their one class (dataset.label); the {kind.name} '
                                      f'data kind has no one class per image, so it uses every example')
        if self.augmentation.flip_left_right and getattr(self.task, 'flips_change_targets', False):
            raise ConfigError("config key 'dataset.augment.flip_left_right': cannot be used for this task: a mirrored "
                              "image has a different target (a flip negates an angle)")
        if self.cfg.augment.random_resized_crop and (kind.moves_with_image or self.augmentation.crop_padding):
            raise ConfigError("config key 'dataset.augment.random_resized_crop': crops the image alone, for data "
                              "kinds whose targets do not move with the image (classification, regression), and "
                              "replaces crop_padding's translation (segmentation and detection: crop_area)")
        if self.augmentation.crop_area < 1.0 and not kind.moves_with_image:
            raise ConfigError("config key 'dataset.augment.crop_area': is for data kinds whose targets move with "
                              "the image (segmentation, detection); classification and regression translate with "
                              "crop_padding")

    @property
    def spec(self) -> DatasetSpec:
        names = self.kind.class_names(self.builder, self.cfg)
        return DatasetSpec(self.cfg.name, len(names), names, image_shape(self.builder, self.cfg))

    def _converter(self, image_format: preprocess.ImageFormat) -> Callable[[dict], dict]:
        """example -> the data contract of the task's kind, images in `image_format` (the dataset's, or another
        for a reader whose images arrive already cropped)."""
        return self.kind.converter(self.task, self.cfg, lambda image: preprocess.image_to_float(image, image_format))

    def _filtering(self, split: str) -> bool:
        return bool(self.cfg.classes) or (bool(self.cfg.train_examples_per_class) and split == self.cfg.train_split)

    def _open(self, split: str) -> tf.data.Dataset:
        """The split's reader, opened once (fit sizes every split it reads before anything else starts)."""
        if split not in self._opened:
            self._opened[split] = open_split(self.builder, split)
        return self._opened[split]

    def records(self, split: str) -> SplitRecords:
        """The split's record files, opened (and checked) once: the streaming path's reader."""
        if split not in self._records:
            self._records[split] = SplitRecords(self.builder, split)
        return self._records[split]

    def fingerprints(self, splits) -> dict[str, str] | None:
        """Each split's record-file fingerprint (streaming path; None in memory), recorded with the run so a
        resumed run notices a dataset prepared again under it."""
        return {s: self.records(s).fingerprint() for s in splits} if self.streaming else None

    def size(self, split: str) -> int:
        if self.streaming:
            return len(self.records(split))
        self._open(split)
        if split not in self._sizes:
            self._sizes[split] = (int(self._selected(split).reduce(0, lambda count, _: count + 1))
                                  if self._filtering(split) else split_size(self.builder, split))
        return self._sizes[split]

    def steps_per_epoch(self, global_batch: int) -> int:
        steps = self.size(self.cfg.train_split) // global_batch
        if steps == 0:
            raise ConfigError(f"config key 'train.batch_size': the train split {self.cfg.train_split!r} has "
                              f"{self.size(self.cfg.train_split)} examples, fewer than one batch of {global_batch}")
        return steps

    def _local_batch(self, global_batch: int) -> int:
        if global_batch % self.process_count:
            raise ConfigError(f'batch size {global_batch} does not divide by the {self.process_count} processes')
        return global_batch // self.process_count

    def _selected(self, split: str) -> tf.data.Dataset:
        """The split's raw examples after class selection and (training split only) the few-shot subset."""
        ds = self._open(split)
        if self.kind.names_examples:
            # Each example's name in the messages of the data-contract checks (jaxdl.data.checks): its position
            # in the (sub)split it was read from, e.g. "voc train example 17".
            prefix = f'{self.cfg.name} {split} example '
            ds = ds.enumerate().map(
                lambda i, ex: {**ex, 'example_id': tf.strings.join([prefix, tf.strings.as_string(i)])})
        label, classes = self.cfg.label, tuple(self.cfg.classes)
        if classes:
            ds = select_classes(ds, label, classes)
        if self.cfg.train_examples_per_class and split == self.cfg.train_split:
            num_classes = len(classes) or class_label(self.builder, self.cfg, self.kind.name).num_classes
            ds = first_per_class(ds, label, num_classes, self.cfg.train_examples_per_class)
        return ds

    def _decoded_split(self, split: str) -> tf.data.Dataset:
        """Decoded and normalised examples; cached in memory, shared by every epoch's iterator."""
        if split not in self._decoded:
            ds = self._selected(split).map(self._converter(preprocess.ImageFormat.of(self.cfg)),
                                           num_parallel_calls=tf.data.AUTOTUNE)
            self._decoded[split] = ds.cache() if self.cfg.cache else ds
        return self._decoded[split]

    # -- training
    def _reader(self, split: str, *, train: bool) -> streaming.ExampleReader:
        cfg, augment = self.cfg, self.augmentation
        image_format = preprocess.ImageFormat.of(cfg)
        crop = None
        if train and cfg.augment.random_resized_crop:  # the window replaces the centre crop
            crop = jpeg.RandomResizedCrop(tuple(cfg.augment.crop_scale), tuple(cfg.augment.crop_ratio))
            image_format = dataclasses.replace(image_format, center_crop=0.0)
        kind, task = self.kind, self.task
        return streaming.ExampleReader(
            self.builder.info.features, self._converter(image_format),
            (lambda ex, seed: kind.augment(ex, seed, augment, task)) if train and augment.active else None,
            crop, image_shape(self.builder, cfg)[2], f'{cfg.name} {split} example ')

    def train_batches(self, *, seed: int, global_batch: int, start_step: int = 0) -> Iterator[dict]:
        """This process's rows of every global batch from step `start_step` on, epoch after epoch, endlessly.
        (Streaming: `_streamed_train_batches`; in memory, as follows.)

        One tf.data pipeline serves the whole run (building one per epoch costs more than a small epoch's
        steps): a flat_map over epochs, each shuffled with its own seed. Resuming at step s skips the s % epoch
        batches of its epoch already seen; augmentation is seeded by (epoch seed, position), so it is redrawn
        identically too."""
        if self.streaming:
            return self._streamed_train_batches(seed=seed, global_batch=global_batch, start_step=start_step)
        split = self.cfg.train_split
        local = self._local_batch(global_batch)
        examples_per_epoch = self.steps_per_epoch(global_batch) * global_batch
        first_epoch, first_batch = divmod(start_step, self.steps_per_epoch(global_batch))
        decoded = self._decoded_split(split)
        buffer = self.cfg.shuffle_buffer or self.size(split)
        augmentation = self.augmentation
        kind, task = self.kind, self.task

        def epoch(e):
            e_seed = epoch_seed(seed, e)
            examples = decoded.shuffle(buffer, seed=e_seed, reshuffle_each_iteration=False).take(examples_per_epoch)
            if augmentation.active:  # seeded by (epoch seed, position in the epoch): redrawn identically on resume
                examples = examples.enumerate().map(
                    lambda i, ex: kind.augment(ex, tf.stack([e_seed, i]), augmentation, task),
                    num_parallel_calls=tf.data.AUTOTUNE)
            # An epoch is a whole number of batches, so each is batched here and only whole batches pass the
            # later stages (each per-example stage costs ~1 us; benchmarks/README.md).
            return examples.batch(global_batch, drop_remainder=True)

        # Resuming skips the batches of its epoch already trained on (augmented too: at most one epoch's work).
        ds = tf.data.Dataset.range(first_epoch, 2 ** 62).flat_map(epoch).skip(first_batch)
        batches = checks.reporting_data_errors(ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator())
        return _process_rows(batches, self.process_index * local, local)

    def sampler(self, seed: int, global_batch: int) -> IndexSampler:
        return IndexSampler(seed, self.size(self.cfg.train_split), global_batch, self.steps_per_epoch(global_batch))

    def _streamed_train_batches(self, *, seed: int, global_batch: int, start_step: int) -> Iterator[dict]:
        split, local = self.cfg.train_split, self._local_batch(global_batch)
        sampler, first_row = self.sampler(seed, global_batch), self.process_index * local
        records, reader = self.records(split), self._reader(split, train=True)
        ds = streaming.train_dataset(records, reader, sampler, start_step=start_step, first_row=first_row,
                                     rows=local, skip_corrupt=self.cfg.skip_corrupt_images)
        rows_of = lambda k: [int(i) for i in sampler.step_indices(start_step + k, first_row, local)['index']]
        return streaming.naming_corrupt_examples(ds.as_numpy_iterator(), records, reader, rows_of)

    # -- evaluation
    def _process_share(self, split: str) -> tuple[int, int]:
        """Streaming: this process's examples [start, stop) of `split`, the shares tfds.even_splits makes."""
        n, p, i = self.size(split), self.process_count, self.process_index
        start = i * (n // p) + min(i, n % p)
        return start, start + n // p + (1 if i < n % p else 0)

    def _process_subsplits(self, split: str) -> list[str]:
        if self.process_count == 1:
            return [split]
        return tfds.even_splits(split, n=self.process_count, drop_remainder=False)

    def num_eval_batches(self, split: str, global_batch: int) -> int:
        local = self._local_batch(global_batch)
        if self.streaming:
            return max(1, math.ceil(math.ceil(self.size(split) / self.process_count) / local))
        largest = max(self.size(s) for s in self._process_subsplits(split))
        return max(1, math.ceil(largest / local))

    def eval_batches(self, split: str, global_batch: int) -> Iterator[dict]:
        """Every example of this process's share once, the last batch padded and marked invalid.

        Each split's evaluation pipeline is built once and a new iterator started over it at each evaluation.
        Built anew each time, every validation added its traced functions (and, streaming, its `numpy_function`
        reader) to TensorFlow's process-wide registries, which never release them. (An iterator kept across
        evaluations, repeating, would read ahead into the next pass in its threads, and still be calling into
        Python when the interpreter exits.)"""
        key = (split, global_batch)
        if key not in self._eval_passes:
            self._eval_passes[key] = self._eval_pass(split, global_batch)
        return _returning_freed_memory(self._eval_passes[key]())

    def _eval_pass(self, split: str, global_batch: int) -> Callable[[], Iterator[dict]]:
        """A function that starts one pass over this process's share of the split, in batches, the padding
        marked invalid, a failed example named."""
        local, batches = self._local_batch(global_batch), self.num_eval_batches(split, global_batch)
        if self.streaming:
            start, stop = self._process_share(split)
            records, reader = self.records(split), self._reader(split, train=False)
            ds = streaming.eval_dataset(records, reader, start=start, stop=stop, rows=local, batches=batches,
                                        skip_corrupt=self.cfg.skip_corrupt_images)
            rows_of = lambda k: list(range(start + k * local, min(start + (k + 1) * local, stop)))
            return lambda: streaming.naming_corrupt_examples(ds.as_numpy_iterator(), records, reader, rows_of)
        subsplit = self._process_subsplits(split)[self.process_index]
        ds = self._decoded_split(subsplit).map(lambda ex: {**ex, 'valid': tf.constant(True)})
        ds = streaming.padded(ds, batches * local - self.size(subsplit))
        ds = ds.batch(local, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
        return lambda: checks.reporting_data_errors(ds.as_numpy_iterator())


def _returning_freed_memory(batches: Iterator[dict]) -> Iterator[dict]:
    """The batches; then what the process freed since the last pass goes back to the system (glibc's malloc_trim;
    elsewhere nothing).

    glibc keeps what a thread frees in that thread's arena for its next allocations, and TensorFlow raises the
    threshold above which it would give it back. The decoding threads of the input pipelines and XLA's threads
    each fill arenas of their own, and a streamed run's resident memory grew with its epochs by what they kept
    (benchmarks/README.md: streamed_epochs_memory.py). Trimmed after every evaluation pass, it levels off."""
    yield from batches
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = getattr(ctypes.CDLL(None), 'malloc_trim', None)


def _process_rows(batches: Iterator[dict], start: int, rows: int) -> Iterator[dict]:
    """This process's rows of each global batch, all valid. Sliced on the host (numpy views): a tf.data map for
    it cost ~100 us of CPU a batch, 1-2% of a small model's step on two cores."""
    for batch in batches:
        yield {**{k: v[start:start + rows] for k, v in batch.items()}, 'valid': np.ones(rows, bool)}
