"""What a run reads a split through: one interface, two sources.

`InMemorySource` (`data/memory.py`) reads each split whole, decodes it once and caches it; `StreamSource`
(`data/streaming.py`) reads examples by index from ArrayRecord files, each process only its own, nothing cached.
`Pipeline` (`data/pipeline.py`) chooses one per run (`choose_source`) and keeps what both share: the dataset's
spec, steps per epoch, a process's rows of a global batch, and the evaluation passes built once per split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol

import numpy as np
import tensorflow as tf

from jaxdl.data import preprocess
from jaxdl.data.model_input import ImageFormat
from jaxdl.data.randaugment import RandAugment


@dataclasses.dataclass(frozen=True)
class SplitReading:
    """What both sources read by: the dataset's settings and builder, the task and its data kind, the
    augmentation, and which process of how many this is."""

    cfg: Any  # the config's `dataset` section
    builder: Any  # a prepared tfds.core.DatasetBuilder
    task: Any  # jaxdl.tasks.Task
    kind: Any  # the task's jaxdl.data.kinds.DataKind
    augmentation: preprocess.Augmentation
    image_shape: tuple[int, int, int]  # the model input's, after preprocessing
    process_index: int = 0
    process_count: int = 1
    randaugment: RandAugment = dataclasses.field(default_factory=RandAugment)
    # Images travel to the device as uint8 pixels (normalised in the steps); False: normalised here, as float32.
    uint8_images: bool = True

    def converter(self, image_format: ImageFormat) -> Callable[[dict], dict]:
        """example -> the data contract of the task's kind, images in `image_format` (the dataset's, or another
        for a reader whose images arrive already cropped): uint8 pixels for 8-bit images (the steps normalise
        them), else normalised float32."""
        to_model = preprocess.image_to_pixels if self.uint8_images else preprocess.image_to_float
        return self.kind.converter(self.task, self.cfg, lambda image: to_model(image, image_format))

    def augment(self, example: dict, seed) -> dict:
        """The training augmentation of the task's kind, seeded by (epoch seed, position in the epoch)."""
        return self.kind.augment(example, seed, self.augmentation, self.task)

    def rand_augment(self, example: dict, seed) -> dict:
        """RandAugment of the data contract's image as pixel values 0-255 (normalised float32 images go back to
        them and are normalised again); seeded by (epoch seed, position), apart from `augment`'s draws."""
        seed = tf.random.experimental.stateless_fold_in(seed, 2)
        image = example['image']
        if self.uint8_images:
            return {**example, 'image': tf.cast(self.randaugment(tf.cast(image, tf.float32), seed), tf.uint8)}
        image_format = ImageFormat.of(self.cfg)
        mean, std = tf.constant(image_format.mean), tf.constant(image_format.std)
        pixels = self.randaugment((image * std + mean) * 255.0, seed)
        return {**example, 'image': (pixels / 255.0 - mean) / std}

    def augmenting(self, example: dict, seed) -> dict:
        """Every training augmentation of a converted example: the kind's, then RandAugment."""
        if self.augmentation.active:
            example = self.augment(example, seed)
        return self.rand_augment(example, seed) if self.randaugment.active else example

    @property
    def augments(self) -> bool:
        return self.augmentation.active or self.randaugment.active


def uint8_images(builder) -> bool:
    """Whether a prepared dataset's `image` feature is declared 8-bit (uint8)."""
    return np.dtype(builder.info.features['image'].np_dtype) == np.uint8


class Source(Protocol):
    """One way of reading a run's splits. Training batches are this process's `rows` rows (from `first_row`) of
    every global batch from `start_step` on, endlessly, all marked valid; an evaluation pass is every example of
    this process's share of a split once, in `batches` batches of `rows`, the padding marked invalid."""

    name: ClassVar[str]  # 'memory' or 'stream', as dataset.source and environment.json write it

    def size(self, split: str) -> int: ...

    def largest_share(self, split: str) -> int:
        """The examples of the largest process's share of `split` (every process pads to its batches)."""

    def fingerprints(self, splits) -> dict[str, str] | None:
        """Each split's file fingerprint, recorded with the run so a resumed run notices files prepared again under
        it; None where the source reads the split whole (nothing is read by index)."""

    def train_batches(
        self, *, seed: int, global_batch: int, steps_per_epoch: int, start_step: int, first_row: int, rows: int
    ) -> Iterator[dict]: ...

    def eval_pass(self, split: str, *, rows: int, batches: int) -> Callable[[], Iterator[dict]]:
        """A function that starts one evaluation pass (built once, started at every evaluation)."""
