"""Tasks: what a model's output means. The contract every task keeps, built-in or the user's, is `Task` below.

`task.name` is a built-in (a module of this package: `classification`, `regression`, `segmentation`,
`detection`, each exporting `TASK`) or an import path `package.module:Attr` to the user's own Task class, built as

    Attr(**task.options)   plus num_classes and class_names (of the dataset), where Attr takes them.

A task computes per-example losses and metric *sums* (reduced across devices and batches, divided once at the end
by `summarize`), and predictions. A task whose figures cannot be summed (detection's COCO mAP) also returns
per-example `eval_predictions`, which evaluation gathers over the whole split and hands to `summarize`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from jaxdl.errors import ConfigError
from jaxdl.registry import KINDS, TASKS, frozen, keyword_parameters

if TYPE_CHECKING:
    import jax
    from ml_collections import ConfigDict


@runtime_checkable
class Task(Protocol):
    """The contract between a task and the rest of jaxdl. Every method is a pure function of its arguments;
    `outputs` are what the model returned for a batch, `batch` follows the data contract of `data_kind`."""

    data_kind: ClassVar[str]  # the data contract it reads (jaxdl.data.kinds): a built-in or an import path
    num_outputs: int  # the model's output width (classes, targets, heatmap channels)
    head_options: dict  # for the built-in models: which head reads the backbone ({'head': 'dense'})
    headline: tuple[str, ...]  # the loss, then the figures the console table and the progress plot show

    def check_outputs(self, outputs: Any, image_shape: tuple[int, int, int], model: str) -> None:
        """Raise a ConfigError naming `model` if `outputs` (shapes, for a batch of 2) do not fit the task."""

    def per_example_loss(self, outputs: Any, batch: dict) -> jax.Array:
        """float32 [B]: each example's loss (padding rows included; the step weights them by `valid`)."""

    def train_metric_sums(self, outputs: Any, batch: dict, per_example_loss: jax.Array) -> dict:
        """Sums over the batch's valid rows (`batch['valid']`); must include 'loss_sum' and 'count'."""

    def eval_metric_sums(self, outputs: Any, batch: dict, per_example_loss: jax.Array) -> dict: ...

    def eval_predictions(self, outputs: Any, batch: dict) -> dict:
        """Per-example rows for figures that cannot be summed; {} when every figure comes from the sums."""

    def summarize(self, sums: dict, predictions: dict | None = None) -> dict:
        """The final figures from summed metrics (host side, numpy): one division at the very end."""

    def predict(self, outputs: Any) -> Any:
        """What a user is shown: probabilities, targets in their units, a class map, boxes."""


class TaskDefaults:
    """What a task may leave out: built-in models read nothing special, evaluation sums what training sums,
    no per-example rows, and the output is not checked. Subclass it (or a built-in task) to write a new task."""

    head_options: ClassVar[dict] = {'head': 'dense'}
    prediction_name: ClassVar[str] = 'predictions'  # what `predict` returns, when one array: its name in an export

    def check_outputs(self, outputs: Any, image_shape: tuple[int, int, int], model: str) -> None:
        del outputs, image_shape, model

    if TYPE_CHECKING:  # the task's own (Task protocol); declared for the type checker

        def train_metric_sums(self, outputs: Any, batch: dict, per_example_loss: jax.Array) -> dict: ...

    def eval_metric_sums(self, outputs: Any, batch: dict, per_example_loss: jax.Array) -> dict:
        return self.train_metric_sums(outputs, batch, per_example_loss)

    def eval_predictions(self, outputs: Any, batch: dict) -> dict:
        return {}


def output_mismatch(model: str, outputs: Any, needs: str) -> ConfigError:
    shapes = outputs.shape if hasattr(outputs, 'shape') else type(outputs).__name__
    return ConfigError(
        f"config key 'model.name': model {model!r} outputs {shapes} for a batch of 2; the task needs {needs}"
    )


_REQUIRED = (
    'data_kind',
    'num_outputs',
    'head_options',
    'headline',
    'check_outputs',
    'per_example_loss',
    'train_metric_sums',
    'eval_metric_sums',
    'eval_predictions',
    'summarize',
    'predict',
)


def task_class(task_cfg: ConfigDict) -> Any:
    """The Task class `task.name` names, checked against the protocol before it is constructed."""
    target = TASKS.resolve(task_cfg.name)
    if not isinstance(target, type):
        raise ConfigError(f"config key 'task.name': {task_cfg.name!r} is a {type(target).__name__}, not a Task class")
    missing = [
        name
        for name in _REQUIRED
        if not hasattr(target, name)
        and name not in getattr(target, '__dataclass_fields__', {})
        and name not in getattr(target, '__annotations__', {})
    ]
    if missing:
        raise ConfigError(
            f"config key 'task.name': {task_cfg.name!r} is not a Task: it lacks {', '.join(missing)} "
            f'(see jaxdl.tasks.Task; subclass jaxdl.tasks.TaskDefaults or a built-in task)'
        )
    kind = getattr(target, 'data_kind', None)
    try:
        KINDS.import_path(kind)
    except ConfigError:
        raise ConfigError(
            f"config key 'task.name': {task_cfg.name!r} has data_kind {kind!r}; it must name a data "
            f"kind: {', '.join(KINDS.builtin_names())}, or 'package.module:KIND' for your own "
            f'(see jaxdl.data.kinds.DataKind)'
        ) from None
    return target


def build_task(task_cfg: ConfigDict, class_names: Sequence[str] | int = ()) -> Task:
    """The task `task_cfg` names, for a dataset with these classes (of its label, mask or objects; () if none).
    `class_names` may also be a count: 10 stands for classes named '0' .. '9'."""
    target = task_class(task_cfg)
    class_names = tuple(str(i) for i in range(class_names)) if isinstance(class_names, int) else tuple(class_names)
    options = frozen(task_cfg.options.to_dict())
    accepted = keyword_parameters(target)
    kwargs = dict(options)
    extras = {'num_classes': len(class_names), 'class_names': class_names}
    if accepted is not None:
        unknown = sorted(set(options) - accepted)
        if unknown:
            valid = sorted(accepted - set(extras))
            raise ConfigError(
                f"config key 'task.options': {', '.join(map(repr, unknown))} "
                f'{"is not an option" if len(unknown) == 1 else "are not options"} of task '
                f'{task_cfg.name!r}; its options: {", ".join(valid) or "none"}'
            )
        kwargs.update({k: v for k, v in extras.items() if k in accepted})
    try:
        return target(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key 'task.options': constructing task {task_cfg.name!r} failed: {e}") from None


def require_option(ok: bool, option: str, message: str) -> None:
    """A built-in task's check of one of its options: a ConfigError naming `task.options.<option>`."""
    if not ok:
        raise ConfigError(f"config key 'task.options.{option}': {message}")
