"""Data kinds: the contracts between a dataset's features and a task. One module per kind, each exporting `KIND`.

A task names the kind it reads (`Task.data_kind`): a built-in (a module of this package: `classification`,
`regression`, `segmentation`, `detection`, `multilabel`) or an import path `package.module:Attr` to the user's own
object that keeps the `DataKind` protocol below. The kind says which features of an example it needs, how an
example becomes the batch contract (the arrays the task's loss and metrics read), how augmentation moves those
arrays with the image, what the classes are called, and how `jaxdl predict` shows a prediction. Nothing else in
jaxdl names a kind: a new one is one new file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from jaxdl.errors import ConfigError, DatasetNotAvailable
from jaxdl.registry import KINDS

if TYPE_CHECKING:
    from ml_collections import ConfigDict

    from jaxdl.data.preprocess import Augmentation
    from jaxdl.tasks import Task


@dataclasses.dataclass(frozen=True)
class Prediction:
    """How `jaxdl predict` shows one image's prediction: `fields` for its JSON record, `summary` for its line on
    the console, and optionally a picture (uint8 RGB) written as IMAGE.<picture_suffix>.png."""

    fields: dict
    summary: str
    picture: np.ndarray | None = None
    picture_suffix: str = ''


@dataclasses.dataclass(frozen=True)
class PredictOptions:
    top: int = 5  # classes listed per image
    min_score: float = 0.3  # boxes and labels shown from this score on


@runtime_checkable
class DataKind(Protocol):
    """One data contract. Every method is a function of its arguments; `task` is the run's task (its options
    reach the contract: regression's targets, segmentation's ignore label, detection's object count)."""

    name: str
    # Targets that are positions in the image (a mask, boxes, points) move with it under augmentation: the
    # zooming crop (`crop_area`) applies and the image-only random-resized crop does not. A kind whose targets do
    # not move leaves the random-resized crop's flip to jaxdl: the stream draws it and the steps mirror the resized
    # crop, without calling `augment`.
    moves_with_image: bool
    # The kind reads one class per example from `dataset.label`, so `dataset.classes` and
    # `train_examples_per_class` can select examples by it.
    selects_by_label: bool
    # The raw example carries 'example_id' (a string naming it: "voc train example 17") for the contract's checks.
    names_examples: bool
    # Every target of an example is a class label or a multi-hot of them, which Mixup and CutMix blend with the
    # image (jaxdl.train.mixing); targets that are positions or measurements are not mixed. Optional (False).
    mixes_labels: bool

    def features(self, task: Task, dataset_cfg: ConfigDict) -> tuple[str, ...]:
        """The top-level features of an example the contract reads (besides 'image')."""

    def check(self, features: Any, task: Task, dataset_cfg: ConfigDict) -> None:
        """Raise DatasetNotAvailable if the dataset's features cannot give this contract (beyond their names)."""

    def class_names(self, builder: Any, dataset_cfg: ConfigDict) -> tuple[str, ...]:
        """The classes a task of this kind sees (() if none)."""

    def converter(self, task: Task, dataset_cfg: ConfigDict, image_transform: Callable) -> Callable[[dict], dict]:
        """example -> {'image': [S, S, C], **targets}, in TF ops; `image_transform` is the dataset's image
        transform: uint8 [H, W, C] -> uint8 pixels [S, S, C] (the steps normalise them on the device), or
        normalised float32 for a dataset whose images are not 8-bit."""

    def augment(self, example: dict, seed: Any, augmentation: Augmentation, task: Task) -> dict:
        """The converted example moved by one random draw of `augmentation` (preprocess.Augmentation) from
        `seed` alone (stateless), targets with the image; the image keeps its dtype."""

    def prediction(
        self, raw_image: np.ndarray, output: Any, task: Task, class_names: Sequence[str], options: PredictOptions
    ) -> Prediction:
        """One image's task prediction (`task.predict` of the model's output), shown."""


class DataKindDefaults:
    """What a kind may leave out: no class selection, no example names, nothing to check beyond the features'
    names, no classes, no picture."""

    moves_with_image: ClassVar[bool] = False
    selects_by_label: ClassVar[bool] = False
    names_examples: ClassVar[bool] = False
    mixes_labels: ClassVar[bool] = False

    def check(self, features: Any, task: Task, dataset_cfg: ConfigDict) -> None:
        del features, task, dataset_cfg

    def class_names(self, builder: Any, dataset_cfg: ConfigDict) -> tuple[str, ...]:
        return ()

    def prediction(
        self, raw_image: np.ndarray, output: Any, task: Task, class_names: Sequence[str], options: PredictOptions
    ) -> Prediction:
        values = np.asarray(output).tolist()
        return Prediction({'output': values}, str(values))


_REQUIRED = (
    'name',
    'moves_with_image',
    'selects_by_label',
    'names_examples',
    'features',
    'check',
    'class_names',
    'converter',
    'augment',
    'prediction',
)


def data_kind(task_or_name: Task | str) -> DataKind:
    """The kind a task (or a kind's name) reads, checked against the protocol."""
    name = task_or_name if isinstance(task_or_name, str) else getattr(task_or_name, 'data_kind', None)
    if not isinstance(name, str):
        raise ConfigError(
            f"config key 'task.name': the task's data_kind must name a data kind (built-in: "
            f"{', '.join(KINDS.builtin_names())}, or 'package.module:KIND'), got {name!r}"
        )
    kind = KINDS.resolve(name)
    missing = [attr for attr in _REQUIRED if not hasattr(kind, attr)]
    if missing:
        raise ConfigError(
            f"config key 'task.name': the task's data_kind {name!r} is not a DataKind: it lacks "
            f'{", ".join(missing)} (see jaxdl.data.kinds.DataKind; subclass DataKindDefaults)'
        )
    return kind


def class_label(builder: Any, dataset_cfg: ConfigDict, kind: str, *, sequence: bool = False) -> Any:
    """The dataset's `dataset.label` feature, which must be a ClassLabel (or, `sequence`, a Sequence of them)."""
    import tensorflow_datasets as tfds

    features = builder.info.features
    label = features[dataset_cfg.label] if dataset_cfg.label in features else None
    inner = label.feature if sequence and isinstance(label, tfds.features.Sequence) else label if not sequence else None
    if not isinstance(inner, tfds.features.ClassLabel):
        wanted = 'a Sequence of ClassLabel' if sequence else 'a ClassLabel'
        found = 'no such feature' if label is None else f'a {type(label).__name__}, not {wanted}'
        raise DatasetNotAvailable(
            f'dataset {dataset_cfg.name!r}: {kind} reads the classes from the feature '
            f'{dataset_cfg.label!r} (dataset.label), which is {found}; its features: '
            f'{", ".join(features.keys())}'
        )
    return inner
