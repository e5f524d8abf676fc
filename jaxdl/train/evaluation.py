"""The one evaluation loop and batched prediction, used by the evaluators of fit(), by jaxdl.runs and notebooks.

`evaluate` sums the task's metric sums over every (padded) batch of a split on the devices and divides once at
the end. (`jaxdl.evaluate` is this function; the module has its own name, so one name is one thing.)
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from jaxdl.data.model_input import ImageFormat, model_input
from jaxdl.train.prefetch import prefetch_to_device
from jaxdl.train.runners import StepRunner
from jaxdl.train.state import TrainState
from jaxdl.train.step import add_sums, predict_step

if TYPE_CHECKING:
    from jaxdl.tasks import Task


def evaluate(runner: StepRunner, device_state: TrainState, batches: Iterable[dict], task: Task) -> dict:
    """Final metrics of one pass over `batches` (every example once; padding rows count for nothing).

    Metric sums stay on the devices until the end. A task with per-example predictions (detection) has them
    fetched batch by batch and gathered from every process, padding rows included (their `valid` is False)."""
    total, rows = None, []
    for _, batch in prefetch_to_device(iter(batches), runner.place_batch):
        sums, predictions = runner.eval(device_state, batch)
        total = sums if total is None else add_sums(total, sums)
        if predictions:
            rows.append(jax.device_get(predictions))
    if total is None:
        raise ValueError('evaluation got no batches')
    gathered = None
    if rows:
        gathered = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            gathered = {k: np.asarray(v) for k, v in multihost_utils.process_allgather(gathered, tiled=True).items()}
    return task.summarize(jax.device_get(total), gathered)


@partial(jax.jit, static_argnames=('task', 'image_format'))
def _predict(state: TrainState, images: jax.Array, task: Task, image_format: ImageFormat | None) -> Any:
    return predict_step(state, images if image_format is None else model_input(images, image_format), task=task)


def predict(
    state: TrainState, images: np.ndarray, task: Task, *, batch_size: int = 256, image_format: ImageFormat | None = None
) -> Any:
    """Task predictions for images [N, H, W, C]: class probabilities [N, C] (classification), targets in their
    units (regression), a class map [N, H, W] and per-pixel probabilities (segmentation), or boxes, scores and
    classes (detection).

    The images are uint8 pixels at the model's input size (the steps normalise them by `state.normalization`), or
    float32 model inputs. With `image_format` (`model_input.ImageFormat`), uint8 images are first cropped and
    resized by it on the device, as an exported model does. The last chunk is padded to `batch_size` so every call
    reuses one compiled function."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = images.astype(np.float32)
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        outputs.append(jax.tree.map(np.asarray, _predict(state, padded, task, image_format)))
    return jax.tree.map(lambda *chunks: np.concatenate(chunks)[: len(images)], *outputs)  # the last chunk's padding off
