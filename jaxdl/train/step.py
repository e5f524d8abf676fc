"""The pure train, eval and predict steps (the runners that compile and place them: `train/runners.py`).

    train_step(state, batch, *, task, axis_name=None) -> (new_state, TrainMetrics)
    eval_step(state, batch, *, task, axis_name=None) -> (metric_sums, per_example_predictions)

`axis_name` set means "inside a mapped axis" (pmap or shard_map): the loss is normalised by the *global* count of
valid examples and gradients and metric sums are summed over the axis exactly once, so every device count computes
the same update as one device with the whole batch. Randomness comes from fold_in(state.rng, state.step) only.
uint8 images are normalised first, by `state.normalization` (`data/model_input.py`), in every step: the input
pipeline hands the device pixels, a quarter of float32's bytes. Mixup and CutMix (`state.mixing`,
`train/mixing.py`) mix the normalised batch inside the step, one draw for the global batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.data.model_input import resize_windows
from jaxdl.train.mixing import mix_batch
from jaxdl.train.state import TrainState

if TYPE_CHECKING:
    from jaxdl.tasks import Task

# The mapped axis (or axes) a step reduces over: pmap's or shard_map's name, None under jit.
AxisName = str | tuple[str, ...] | None

# float32 holds step numbers exactly up to 2**24: "no non-finite step yet".
NO_STEP = float(2**24)


@flax.struct.dataclass
class TrainMetrics:
    """What a train step returns beside the new state, and what the loop sums over steps: the task's metric sums,
    and apart from them how many steps had a non-finite loss or gradient (their updates were not applied) and the
    first such step (1-based, as the loop counts; NO_STEP when there was none)."""

    sums: dict
    nonfinite_steps: jax.Array
    first_nonfinite_step: jax.Array


def _psum(tree: Any, axis_name: AxisName) -> Any:
    return jax.lax.psum(tree, axis_name) if axis_name else tree


def _model_batch(state: TrainState, batch: dict) -> dict:
    """The batch with its images as the model takes them: uint8 pixels normalised (a batch of random-resized
    crops, which carries 'image_window', resized from its canvases first, and mirrored where 'image_flip' says);
    float32 images as they are."""
    if 'image_window' not in batch:
        return {**batch, 'image': state.normalization(batch['image'])}
    batch = dict(batch)
    pixels = resize_windows(batch['image'], batch.pop('image_window'), batch.pop('image_flip', None))
    return {**batch, 'image': state.normalization.of_pixel_values(pixels)}


def _forward(
    state: TrainState, params: Any, batch: dict, *, train: bool, axis_name: AxisName, rng: jax.Array | None = None
) -> tuple[Any, Any]:
    """Model outputs and the updated non-param collections (batch statistics) when training."""
    mutable = list(state.model_state) if train and state.model_state else False
    out = state.apply_fn(
        {'params': params, **state.model_state},
        batch['image'],
        train=train,
        axis_name=axis_name,
        rngs={'dropout': rng} if rng is not None else None,
        mutable=mutable,
    )
    return out if mutable else (out, state.model_state)


def _device_varying(tree: Any, axis_name: AxisName) -> Any:
    """Each leaf marked as varying over `axis_name` (a no-op outside shard_map's type checking).

    Under `shard_map` with check_vma=True (JAX's default) a replicated input is *invariant*, and the gradient of an
    invariant value arrives already summed over the axis (the transpose of its implicit broadcast is a psum).
    Differentiating with respect to a varying copy instead gives every API (pmap, shard_map with or without
    check_vma) the same per-device gradient, which the step then sums exactly once."""
    if not axis_name:
        return tree

    def vary(leaf: jax.Array) -> jax.Array:
        if axis_name in getattr(jax.typeof(leaf), 'vma', ()):
            return leaf
        return jax.lax.pcast(leaf, axis_name, to='varying')

    return jax.tree.map(vary, tree)


def train_step(
    state: TrainState, batch: dict, *, task: Task, axis_name: AxisName = None
) -> tuple[TrainState, TrainMetrics]:
    step_key = rng = jax.random.fold_in(state.rng, state.step)
    if axis_name:  # each device draws its own dropout mask
        rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
    batch = _model_batch(state, batch)
    valid = batch['valid'].astype(jnp.float32)
    global_count = jnp.maximum(_psum(jnp.sum(valid), axis_name), 1.0)
    mixing = state.mixing
    if mixing is not None:  # one draw for the global batch: the step's key before the per-device fold
        batch, partner, lam = mix_batch(batch, step_key, mixing, axis_name)

    def loss_fn(params: Any) -> tuple[jax.Array, tuple[Any, jax.Array, Any]]:
        outputs, model_state = _forward(state, params, batch, train=True, axis_name=axis_name, rng=rng)
        per_example = task.per_example_loss(outputs, batch)
        if mixing is not None:  # = the loss against the mixed (soft) targets: it is linear in them
            per_example = lam * per_example + (1.0 - lam) * task.per_example_loss(outputs, partner)
        return jnp.sum(per_example * valid) / global_count, (outputs, per_example, model_state)

    (loss, (outputs, per_example, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        _device_varying(state.params, axis_name)
    )
    grads = _psum(grads, axis_name)
    # A non-finite loss or gradient anywhere leaves parameters, optimizer and model state as they were (the step
    # counter still advances with the data); the loop stops or carries on as train.on_nonfinite says.
    finite = jnp.isfinite(_psum(loss, axis_name)) & _all_finite(grads)
    updated = state.apply_gradients(grads, model_state)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = updated.replace(
        params=keep(updated.params, state.params),
        opt_state=keep(updated.opt_state, state.opt_state),
        model_state=keep(updated.model_state, state.model_state),
    )
    if state.ema is not None:  # the moving average of the weights this step leaves (unchanged by a skipped one)
        new_state = new_state.replace(ema=keep(state.updated_ema(new_state.params, new_state.model_state), state.ema))
    if mixing is not None:  # training metrics count against the dominant label
        batch = jax.tree.map(lambda own, other: jnp.where(lam >= 0.5, own, other), batch, partner)
    sums = _psum(task.train_metric_sums(outputs, batch, per_example), axis_name)
    sums = jax.tree.map(lambda m: jnp.where(finite, m, jnp.zeros_like(m)), sums)  # skipped steps count nothing
    return new_state, TrainMetrics(
        sums=sums,
        nonfinite_steps=1.0 - finite.astype(jnp.float32),
        first_nonfinite_step=jnp.where(finite, NO_STEP, (state.step + 1).astype(jnp.float32)),
    )


def _all_finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def eval_step(state: TrainState, batch: dict, *, task: Task, axis_name: AxisName = None) -> tuple[dict, dict]:
    """Metric sums (reduced over `axis_name`) and the task's per-example predictions for figures that cannot be
    summed (e.g. detection boxes for COCO mAP; {} for most tasks), one row per example of this shard."""
    batch = _model_batch(state, batch)
    outputs, _ = _forward(state, state.params, batch, train=False, axis_name=axis_name)
    per_example = task.per_example_loss(outputs, batch)
    return _psum(task.eval_metric_sums(outputs, batch, per_example), axis_name), task.eval_predictions(outputs, batch)


@jax.jit
def add_sums(a: dict, b: dict) -> dict:
    """Metric sums of two batches added on the device, in one dispatch (an eager add is one dispatch a leaf)."""
    return jax.tree.map(jnp.add, a, b)


@jax.jit
def add_train_metrics(a: TrainMetrics, b: TrainMetrics) -> TrainMetrics:
    return TrainMetrics(
        sums=jax.tree.map(jnp.add, a.sums, b.sums),
        nonfinite_steps=a.nonfinite_steps + b.nonfinite_steps,
        first_nonfinite_step=jnp.minimum(a.first_nonfinite_step, b.first_nonfinite_step),
    )


def predict_step(state: TrainState, images: jax.Array | np.ndarray, *, task: Task) -> Any:
    """The task's predictions for a batch of images (uint8 pixels, or float32 model inputs)."""
    outputs, _ = _forward(state, state.params, _model_batch(state, {'image': images}), train=False, axis_name=None)
    return task.predict(outputs)
