"""Trained runs read back from their run directories (config.json, environment.json, checkpoints) alone: the API
behind `jaxdl evaluate`, `predict` and `rerun`, and what notebooks use to look at a run.

`load_run` rebuilds the selected (or any) checkpoint's model and task; `evaluate_run` scores it on any split.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from jaxdl import config as config_lib
from jaxdl.checkpoint import Checkpoints
from jaxdl.data.model_input import ImageFormat
from jaxdl.errors import CheckpointError, ConfigError, InputError
from jaxdl.logging import drop_harmless_library_notes
from jaxdl.registry import WEIGHTS, add_code_roots
from jaxdl.train.evaluation import evaluate, predict
from jaxdl.train.runners import runner_for
from jaxdl.train.state import TrainState, state_from_config

if TYPE_CHECKING:
    from ml_collections import ConfigDict

    from jaxdl.tasks import Task


@dataclasses.dataclass
class Run:
    """A trained run rebuilt from its workdir."""

    workdir: Path
    config: config_lib.ConfigDict
    environment: dict
    task: Task
    state: TrainState
    step: int

    @property
    def class_names(self) -> list[str]:
        return self.environment['dataset'].get('class_names') or [str(i) for i in range(self.task.num_outputs)]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.environment['dataset']['image_shape'])


def read_run_files(workdir: Path, *, trust_code: bool = False) -> tuple[config_lib.ConfigDict, dict]:
    """A run's config and environment records; the directories of the user code it names become importable (from
    outside the installed packages and the current directory only with `trust_code`: registry.add_code_roots)."""
    workdir = Path(workdir)
    for name in ('config.json', 'environment.json'):
        if not (workdir / name).is_file():
            raise CheckpointError(f'{workdir} is not a jaxdl run directory (no {name}); train with `jaxdl train` first')
    config = config_lib.config_from_json((workdir / 'config.json').read_text())
    environment = json.loads((workdir / 'environment.json').read_text())
    add_code_roots(config, environment.get('code_paths'), trust=trust_code, run=str(workdir))
    return config, environment


def initial_state(config: ConfigDict, environment: dict) -> tuple[TrainState, Task]:
    """A freshly initialised state with the run's structure (the target a checkpoint restores into)."""
    from jaxdl.tasks import build_task

    dataset = environment['dataset']
    plan = config_lib.Plan.resolve(config, environment['plan']['steps_per_epoch'])
    task = build_task(config.task, dataset.get('class_names', ()))
    state, _ = state_from_config(config, task, image_shape=dataset['image_shape'], plan=plan)
    return state, task


def load_run(
    workdir: str | Path, checkpoint: str | int = 'best', *, weights: str = 'raw', trust_code: bool = False
) -> Run:
    """A trained run's checkpoint (best | latest | STEP), its own weights or (`weights='ema'`) their EMA in place."""
    workdir = Path(workdir)
    config, environment = read_run_files(workdir, trust_code=trust_code)
    if weights not in WEIGHTS:
        raise ConfigError(f'--weights must be one of {", ".join(WEIGHTS)}, got {weights!r}')
    if weights == 'ema' and not config.optimizer.ema_decay:
        raise ConfigError(
            f'--weights ema: the run in {workdir} was trained without an EMA of its weights '
            f'(optimizer.ema_decay = 0); use --weights raw'
        )
    state, task = initial_state(config, environment)
    drop_harmless_library_notes()  # orbax's note on a checkpoint opened to read
    checkpoints = Checkpoints(workdir / 'checkpoints', read_only=True)
    try:
        step = checkpoints.resolve(checkpoint)
        tree, _ = checkpoints.restore(step, state.to_checkpoint())
    finally:
        checkpoints.close()
    state = state.from_checkpoint(tree)
    return Run(workdir, config, environment, task, state.ema_weights() if weights == 'ema' else state, step)


def predict_images(run: Run, images: np.ndarray) -> Any:
    """`jaxdl predict`'s outputs for uint8 images [N, H, W, C] of the run's input shape: cropped, resized and
    normalised as the run's evaluation images were, on the device by the function an export carries
    (`model_input`), then the task's predictions (probabilities, targets, class maps, boxes)."""
    image_format = ImageFormat.of(run.config.dataset)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.shape[1:] != run.image_shape:
        raise InputError(
            f'the model takes uint8 images of shape {run.image_shape}, got {images.dtype} {images.shape[1:]}'
        )
    return predict(run.state, images, run.task, image_format=image_format)


def evaluate_run(
    workdir: str | Path,
    split: str,
    checkpoint: str | int = 'best',
    batch_size: int | None = None,
    *,
    weights: str = 'raw',
    trust_code: bool = False,
) -> dict:
    """Metrics of a trained run's checkpoint (its weights, or their EMA) on any split of its dataset."""
    from jaxdl.data.pipeline import Pipeline

    run = load_run(workdir, checkpoint, weights=weights, trust_code=trust_code)
    pipeline = Pipeline(
        run.config.dataset, run.task, process_index=jax.process_index(), process_count=jax.process_count()
    )
    runner = runner_for(run.config.train, run.task)
    batch_size = batch_size or run.config.train.eval_batch_size
    metrics = evaluate(runner, runner.place_state(run.state), pipeline.eval_batches(split, batch_size), run.task)
    return {'split': split, 'step': run.step, 'weights': weights, **metrics}
