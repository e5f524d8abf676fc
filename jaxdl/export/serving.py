"""The function every export format carries: a run's model with its preprocessing in front and its task's
`predict` behind, from the uint8 images a client has to the outputs `jaxdl predict` computes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from jaxdl.data.model_input import ImageFormat, model_input
from jaxdl.tasks import TaskDefaults
from jaxdl.train.step import predict_step

if TYPE_CHECKING:
    from jaxdl.runs import Run


@dataclasses.dataclass(frozen=True)
class Serving:
    """`apply(params, images)` -> {output name: array}; `params` the run's weights (and BatchNorm statistics),
    `images` uint8 [N, H, W, C] of `image_shape`."""

    apply: Callable[[Any, jax.Array], dict[str, jax.Array]]
    params: Any
    image_shape: tuple[int, int, int]
    output_names: tuple[str, ...]

    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        return self.apply(self.params, images)

    def input_spec(self, batch: int | None) -> jax.ShapeDtypeStruct:
        """The images' shape and dtype; `batch=None`: any batch size (a symbolic dimension 'batch')."""
        leading = jax.export.symbolic_shape('batch') if batch is None else (batch,)
        return jax.ShapeDtypeStruct((*leading, *self.image_shape), np.uint8)


def serving(run: Run) -> Serving:
    """The run's model as one function of (weights, uint8 images): the weights stay an argument, so a format
    that keeps them apart (SavedModel variables) can, and one that embeds them closes over them."""
    image_format = ImageFormat.of(run.config.dataset)
    task, state = run.task, run.state
    name = getattr(task, 'prediction_name', TaskDefaults.prediction_name)  # a task of the protocol alone may lack it

    def apply(weights: Any, images: jax.Array) -> dict[str, jax.Array]:
        params, model_state = weights
        outputs = predict_step(
            state.replace(params=params, model_state=model_state), model_input(images, image_format), task=task
        )
        return dict(outputs) if isinstance(outputs, dict) else {name: outputs}

    weights = (state.params, state.model_state)
    shapes = jax.eval_shape(apply, weights, jax.ShapeDtypeStruct((1, *run.image_shape), np.uint8))
    return Serving(apply, weights, run.image_shape, tuple(shapes))
