"""tfds -> tf.data -> numpy batches that follow the data contract of DESIGN.md.

The builder a run names (`get_builder`, `prepare_dataset`), the source it reads through (`choose_source`: the
in-memory source of `memory.py`, or the stream source of `streaming.py` for datasets too large to cache) and the
`Pipeline` around it, which keeps what both sources share. Both keep the invariants: global batches independent of
the process count, exact resume, every evaluation example counted once.
"""

from __future__ import annotations

import ctypes
import dataclasses
import difflib
import math
import sys
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from jaxdl.data import CATALOG, prepare_command, preprocess, quiet_tfds, resolve_data_dir
from jaxdl.data.kinds import data_kind
from jaxdl.data.memory import InMemorySource, split_size
from jaxdl.data.model_input import ImageFormat
from jaxdl.data.randaugment import RandAugment
from jaxdl.data.records import array_record_advice, is_random_access, preparable
from jaxdl.data.source import Source, SplitReading, uint8_images
from jaxdl.data.streaming import StreamSource
from jaxdl.errors import ConfigError, DatasetNotAvailable
from jaxdl.logging import display_path
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

        return folder.prepared_builder(name[len('folder:') :], dataset_cfg, data_dir)
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
        raise DatasetNotAvailable(
            f'unknown dataset {name!r}.{hint} `jaxdl datasets` lists the built-in ones; an '
            f"image folder is 'folder:PATH', your own TFDS builder 'package.module:Class'."
        ) from None


def prepare_dataset(name: str, data_dir: str, *, array_record: bool = False) -> tfds.core.DatasetBuilder:
    """`jaxdl prepare`: a built-in, a user's builder class or a catalog name prepared into `data_dir` (a catalog
    dataset downloads: run it on a machine with internet), as ArrayRecord files (`array_record`) for the streaming
    path or TFDS's default TFRecord. A version already prepared there in another format is an error: tfds keeps
    one format per prepared version, so the other format goes into a data dir of its own."""
    file_format = 'array_record' if array_record else None
    if not preparable(name):
        raise DatasetNotAvailable(
            f'{name!r} is neither a built-in (`jaxdl datasets`), a TFDS builder '
            f"class 'package.module:Class' nor a TFDS catalog name; an image folder or arrays "
            f'are prepared by the run that names them'
        )
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
                f'{wanted.value} into another data dir (`{prepare_command(name, f"{data_dir}-{wanted.value}", array_record=array_record)}`)'
            )
        return builder
    builder = make(file_format)
    prepare(builder, 'once' + (', as ArrayRecord' if array_record else ''))
    return make(file_format)


def prepare(builder: tfds.core.DatasetBuilder, how: str) -> None:
    """Prepares a dataset whose code needs no network, saying so in one line on stderr (tfds' own progress bars
    and "Downloading ..." messages would say something else, on stdout, which is for results)."""
    print(f'preparing {builder.name} ({how}) in {display_path(builder.data_dir_root)}', file=sys.stderr, flush=True)
    try:
        with quiet_tfds():
            builder.download_and_prepare()
    except FileExistsError:
        # Another process (a sibling of a multi-process run, a parallel test) prepared it first; tfds renames its
        # finished copy into place atomically, so theirs is complete.
        pass


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    num_classes: int  # of the task's classes (label, mask or objects); 0 if there are none
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]  # after preprocessing


def image_shape(builder, dataset_cfg) -> tuple[int, int, int]:
    """The model input's shape: the dataset's images, resized to dataset.image_size if set."""
    height, width, channels = builder.info.features['image'].shape
    if dataset_cfg.image_size:
        return dataset_cfg.image_size, dataset_cfg.image_size, channels
    if height is None or width is None:
        raise DatasetNotAvailable(
            f'dataset {dataset_cfg.name!r} has images of varying size; set dataset.image_size '
            f'to train on batches of one size (e.g. --config.dataset.image_size=128)'
        )
    return height, width, channels


def choose_source(dataset_cfg, builder, train_size: int, shape: tuple[int, int, int], uint8: bool = True) -> str:
    """'memory' or 'stream' for `dataset.source` ('auto' decides by what the in-memory path would hold: the
    decoded split, uint8 pixels or float32 for images that are not 8-bit, when cached or shuffled whole, else the
    shuffle buffer). Settings only the streaming path implements, and a split too large for memory stored where
    it cannot be read by index, are errors that say what to change."""
    d = dataset_cfg
    streaming_only = [
        key
        for key, on in (
            ('dataset.augment.random_resized_crop', d.augment.random_resized_crop),
            ('dataset.skip_corrupt_images', d.skip_corrupt_images),
        )
        if on
    ]
    filtering = [
        key
        for key, on in (
            ('dataset.classes', d.classes),
            ('dataset.train_examples_per_class', d.train_examples_per_class),
        )
        if on
    ]
    held = train_size if d.cache or not d.shuffle_buffer else min(d.shuffle_buffer, train_size)
    held_mb = held * math.prod(shape) * (1 if uint8 else 4) / 2**20
    if d.source == 'memory' or (
        d.source == 'auto' and not streaming_only and (filtering or held_mb <= d.memory_limit_mb)
    ):
        if streaming_only:
            raise ConfigError(
                f'config key {streaming_only[0]!r}: is implemented by the streaming path; set '
                f"dataset.source='stream' or 'auto' (the dataset must be stored as ArrayRecord)"
            )
        return 'memory'
    if filtering:
        raise ConfigError(
            f"config key {filtering[0]!r}: selects examples on the in-memory path only; set dataset.source='memory'"
        )
    if not is_random_access(builder):
        why = (
            f'it would hold {held_mb:,.0f} MB in memory (dataset.memory_limit_mb={d.memory_limit_mb})'
            if not streaming_only
            else f'{streaming_only[0]} needs the streaming path'
        )
        raise ConfigError(
            f'dataset {d.name!r} is stored as {builder.info.file_format.value}, which cannot be read by index, and '
            f"{why}. To stream it, {array_record_advice(d.name, builder)}set dataset.source='memory' with "
            f'dataset.cache=False and a dataset.shuffle_buffer (e.g. 10000) to bound its memory.'
        )
    memory_only = [
        key for key, on in (('dataset.shuffle_buffer', d.shuffle_buffer), ('dataset.cache', not d.cache)) if on
    ]
    if memory_only:
        raise ConfigError(
            f'config key {memory_only[0]!r}: applies to the in-memory path only, and this run streams '
            f'(dataset.source={d.source!r}): the stream shuffles every epoch whole, by index, and '
            f"caches nothing. Leave it at its default, or set dataset.source='memory'"
        )
    return 'stream'


class Pipeline:
    """The input pipeline of one run: its source (in memory or streamed, `data/source.py`) and what both share:
    the dataset's spec, steps per epoch, this process's rows of a global batch, and each split's evaluation pass,
    built once and started at every evaluation.

    `task` is the run's task (jaxdl.tasks.Task): its `data_kind` says which targets to prepare, with its own
    settings. `builder` (default: the one `dataset_cfg` names) must be prepared. Images are batched as uint8
    pixels where the dataset declares 8-bit images (the steps normalise them on the device), else normalised here
    as float32; `uint8=False` normalises 8-bit images here too (a loop of your own that feeds float32)."""

    def __init__(
        self,
        dataset_cfg,
        task,
        *,
        builder=None,
        process_index: int = 0,
        process_count: int = 1,
        uint8: bool = True,
    ):
        self.cfg = dataset_cfg
        self.task = task
        self.kind = data_kind(task)
        self.process_index, self.process_count = process_index, process_count
        self.builder = builder if builder is not None else get_builder(dataset_cfg)
        self.uint8 = uint8 and uint8_images(self.builder)
        # The outside of a moved image: the pixel value that normalises to 0 for uint8 images, 0 for normalised ones
        fill = ImageFormat.of(dataset_cfg).normalization.zero_pixel if self.uint8 else (0.0,)
        self.augmentation = preprocess.Augmentation.of(dataset_cfg.augment, fill)
        self._check()
        self._eval_passes: dict[tuple[str, int], Callable[[], Iterator[dict]]] = {}
        shape = image_shape(self.builder, dataset_cfg)
        reading = SplitReading(
            dataset_cfg,
            self.builder,
            task,
            self.kind,
            self.augmentation,
            shape,
            process_index,
            process_count,
            RandAugment.of(dataset_cfg.augment),
            self.uint8,
        )
        chosen = choose_source(
            dataset_cfg, self.builder, split_size(self.builder, dataset_cfg.train_split), shape, self.uint8
        )
        self.source: Source = (StreamSource if chosen == StreamSource.name else InMemorySource)(reading)

    @classmethod
    def for_config(cls, config, *, process_index: int = 0, process_count: int = 1, uint8: bool = True) -> Pipeline:
        """The pipeline of a run's config, with the run's task built for the dataset's classes."""
        from jaxdl.tasks import build_task, task_class

        builder = get_builder(config.dataset)
        task = build_task(
            config.task, data_kind(task_class(config.task).data_kind).class_names(builder, config.dataset)
        )
        return cls(
            config.dataset,
            task,
            builder=builder,
            process_index=process_index,
            process_count=process_count,
            uint8=uint8,
        )

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
            raise DatasetNotAvailable(
                f'dataset {self.cfg.name!r} has no feature {", ".join(map(repr, missing))} '
                f'(the {kind.name} task reads it); its features: {", ".join(features.keys())}'
            )
        kind.check(features, self.task, self.cfg)
        image_shape(self.builder, self.cfg)
        if (self.cfg.classes or self.cfg.train_examples_per_class) and not kind.selects_by_label:
            key = 'dataset.classes' if self.cfg.classes else 'dataset.train_examples_per_class'
            raise DatasetNotAvailable(
                f'{key} selects images by their one class (dataset.label); the {kind.name} '
                f'data kind has no one class per image, so it uses every example'
            )
        if self.augmentation.flip_left_right and getattr(self.task, 'flips_change_targets', False):
            raise ConfigError(
                "config key 'dataset.augment.flip_left_right': cannot be used for this task: a mirrored "
                'image has a different target (a flip negates an angle)'
            )
        if self.cfg.augment.random_resized_crop and (kind.moves_with_image or self.augmentation.crop_padding):
            raise ConfigError(
                "config key 'dataset.augment.random_resized_crop': crops the image alone, for data "
                'kinds whose targets do not move with the image (classification, regression), and '
                "replaces crop_padding's translation (segmentation and detection: crop_area)"
            )
        pixel_only = [
            key
            for key in ('randaugment_layers', 'random_resized_crop')
            if self.cfg.augment[key] and not uint8_images(self.builder)
        ]
        if pixel_only:
            raise ConfigError(
                f"config key 'dataset.augment.{pixel_only[0]}': works on 8-bit images (JPEG or PNG pixels); the "
                f'images of {self.cfg.name!r} are {np.dtype(features["image"].np_dtype)}: set it to '
                f'{0 if pixel_only[0] == "randaugment_layers" else False}'
            )
        if self.cfg.augment.randaugment_layers and kind.moves_with_image:
            raise ConfigError(
                f"config key 'dataset.augment.randaugment_layers': RandAugment moves the image alone; "
                f"the {kind.name} data kind's targets move with it: set it to 0 (crop_area and "
                f'flip_left_right move both)'
            )
        mixing = [k for k in ('mixup_alpha', 'cutmix_alpha') if self.cfg.augment[k]]
        if mixing and not getattr(kind, 'mixes_labels', False):
            raise ConfigError(
                f"config key 'dataset.augment.{mixing[0]}': Mixup and CutMix blend class labels; the "
                f"{kind.name} data kind's targets are not class labels: set it to 0"
            )
        if self.augmentation.crop_area < 1.0 and not kind.moves_with_image:
            raise ConfigError(
                "config key 'dataset.augment.crop_area': is for data kinds whose targets move with "
                'the image (segmentation, detection); classification and regression translate with '
                'crop_padding'
            )

    @property
    def spec(self) -> DatasetSpec:
        names = self.kind.class_names(self.builder, self.cfg)
        return DatasetSpec(self.cfg.name, len(names), names, image_shape(self.builder, self.cfg))

    def size(self, split: str) -> int:
        return self.source.size(split)

    def fingerprints(self, splits) -> dict[str, str] | None:
        return self.source.fingerprints(splits)

    def steps_per_epoch(self, global_batch: int) -> int:
        steps = self.size(self.cfg.train_split) // global_batch
        if steps == 0:
            raise ConfigError(
                f"config key 'train.batch_size': the train split {self.cfg.train_split!r} has "
                f'{self.size(self.cfg.train_split)} examples, fewer than one batch of {global_batch}'
            )
        return steps

    def _local_batch(self, global_batch: int) -> int:
        if global_batch % self.process_count:
            raise ConfigError(f'batch size {global_batch} does not divide by the {self.process_count} processes')
        return global_batch // self.process_count

    # -- training
    def train_batches(self, *, seed: int, global_batch: int, start_step: int = 0) -> Iterator[dict]:
        """This process's rows of every global batch from step `start_step` on, epoch after epoch, endlessly."""
        local = self._local_batch(global_batch)
        return self.source.train_batches(
            seed=seed,
            global_batch=global_batch,
            steps_per_epoch=self.steps_per_epoch(global_batch),
            start_step=start_step,
            first_row=self.process_index * local,
            rows=local,
        )

    # -- evaluation
    def num_eval_batches(self, split: str, global_batch: int) -> int:
        return max(1, math.ceil(self.source.largest_share(split) / self._local_batch(global_batch)))

    def eval_batches(self, split: str, global_batch: int) -> Iterator[dict]:
        """Every example of this process's share once, the last batch padded and marked invalid.

        Each split's evaluation pipeline is built once and a new iterator started over it at each evaluation.
        Built anew each time, every validation added its traced functions (and, streaming, its `numpy_function`
        reader) to TensorFlow's process-wide registries, which never release them. (An iterator kept across
        evaluations, repeating, would read ahead into the next pass in its threads, and still be calling into
        Python when the interpreter exits.)"""
        key = (split, global_batch)
        if key not in self._eval_passes:
            self._eval_passes[key] = self.source.eval_pass(
                split, rows=self._local_batch(global_batch), batches=self.num_eval_batches(split, global_batch)
            )
        return _returning_freed_memory(self._eval_passes[key]())


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
