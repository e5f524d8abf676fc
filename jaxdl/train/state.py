"""TrainState: everything a step reads or changes, as one pytree (apply_fn and tx are static)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxdl.data.model_input import ImageFormat, Normalization
from jaxdl.errors import ConfigError

if TYPE_CHECKING:
    from ml_collections import ConfigDict

    from jaxdl.config import Plan
    from jaxdl.tasks import Task


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: train steps taken (micro-steps when gradients accumulate)
    params: Any  # the 'params' collection
    model_state: Any  # every other collection (e.g. 'batch_stats'); {} for stateless models
    opt_state: Any
    rng: jax.Array  # raw uint32[2] key: plain data, so a checkpoint restores with orbax alone
    apply_fn: Callable = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    # The EMA of the weights (optimizer.ema_decay): {'params', 'model_state'} like the live ones, or None (off).
    ema: Any = None
    ema_decay: float = flax.struct.field(pytree_node=False, default=0.0)
    ema_every: int = flax.struct.field(pytree_node=False, default=1)  # micro-steps per update (accumulation)
    # Mixup / CutMix in the train step (jaxdl.train.mixing.Mixing), or None (off).
    mixing: Any = flax.struct.field(pytree_node=False, default=None)
    # How the steps turn uint8 pixels into model inputs (the dataset's mean and std); float32 images pass as they are.
    normalization: Normalization = flax.struct.field(pytree_node=False, default=Normalization())

    if TYPE_CHECKING:  # flax.struct.dataclass adds it; declared for the type checker

        def replace(self, **changes: Any) -> TrainState: ...

    @property
    def variables(self) -> dict:
        return {'params': self.params, **self.model_state}

    def apply_gradients(self, grads: Any, model_state: Any) -> TrainState:
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(
            step=self.step + 1,
            params=optax.apply_updates(self.params, updates),
            model_state=model_state,
            opt_state=opt_state,
        )

    def updated_ema(self, params: Any, model_state: Any) -> Any:
        """The EMA after the update that produced `params` and `model_state` (state.step + 1 micro-steps): each
        `ema_every` micro-steps (an optimizer update, with gradient accumulation) it moves by
        decay_t = min(ema_decay, (1 + t) / (10 + t)), t the updates so far; in between it stays."""
        if self.ema is None:
            return None
        micro = self.step + 1
        t = (micro // self.ema_every).astype(jnp.float32)
        decay = jnp.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))
        decay = jnp.where(micro % self.ema_every == 0, decay, 1.0)
        return jax.tree.map(
            lambda e, w: decay * e + (1.0 - decay) * w, self.ema, {'params': params, 'model_state': model_state}
        )

    def ema_weights(self) -> TrainState:
        """This state with the EMA in place of the weights (what the EMA evaluators score)."""
        if self.ema is None:
            raise ConfigError(
                'this run was trained without an EMA of its weights (optimizer.ema_decay = 0): use '
                'the raw weights, or train with optimizer.ema_decay set (e.g. 0.999)'
            )
        return self.replace(params=self.ema['params'], model_state=self.ema['model_state'])

    def with_ema_of_weights(self) -> TrainState:
        """The EMA (where on) restarted at the current weights: at initialisation and after a transfer."""
        if self.ema is None:
            return self
        return self.replace(ema=jax.tree.map(jnp.copy, {'params': self.params, 'model_state': self.model_state}))

    def to_checkpoint(self) -> dict:
        """The saved tree: plain arrays in nested dicts, restorable by orbax without jaxdl."""
        tree = {
            'step': self.step,
            'params': self.params,
            'model_state': self.model_state,
            'opt_state': self.opt_state,
            'rng': self.rng,
        }
        return tree if self.ema is None else {**tree, 'ema': self.ema}

    def from_checkpoint(self, tree: dict) -> TrainState:
        return self.replace(**tree)


def _initial_state(
    key: jax.Array,
    model: Any,
    tx: optax.GradientTransformation,
    image_shape: tuple[int, ...],
    ema_decay: float = 0.0,
    ema_every: int = 1,
) -> TrainState:
    from jaxdl.models import ModelApply

    init_key, state_key = jax.random.split(key)
    variables = dict(
        model.init({'params': init_key, 'dropout': init_key}, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    )
    if 'params' not in variables:
        raise ValueError(f'{type(model).__name__} has no parameters to train (its init gave {sorted(variables)})')
    params = variables.pop('params')
    ema = jax.tree.map(jnp.copy, {'params': params, 'model_state': variables}) if ema_decay else None
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        model_state=variables,
        opt_state=tx.init(params),
        rng=state_key,
        apply_fn=ModelApply(model),
        tx=tx,
        ema=ema,
        ema_decay=float(ema_decay),
        ema_every=int(ema_every),
    )


def abstract_train_state(
    model: Any,
    tx: optax.GradientTransformation,
    *,
    image_shape: Sequence[int],
    ema_decay: float = 0.0,
    ema_every: int = 1,
) -> TrainState:
    """The shapes and dtypes of the state create_train_state makes, without computing it."""
    return jax.eval_shape(
        partial(
            _initial_state, model=model, tx=tx, image_shape=tuple(image_shape), ema_decay=ema_decay, ema_every=ema_every
        ),
        jax.random.PRNGKey(0),
    )


def create_train_state(
    model: Any,
    tx: optax.GradientTransformation,
    *,
    seed: int,
    image_shape: Sequence[int],
    shardings: Any = None,
    ema_decay: float = 0.0,
    ema_every: int = 1,
) -> TrainState:
    """Initialises parameters and optimizer state of a flax Module `model` (applied as
    `model.apply(variables, images, train=...)`; see jaxdl.models), in one compiled function (an un-jitted Flax
    init costs seconds on CPU). `shardings` (a TrainState of NamedShardings, e.g. `runner.state_shardings(...)`)
    creates each leaf where it will live, split over devices, never whole on one of them. `ema_decay` > 0 keeps
    an EMA of the weights (`ema_every`: micro-steps per optimizer update)."""
    # Static model, optimizer and shape: the compiled init is reused for the same model value and optimizer.
    init = jax.jit(
        _initial_state,
        static_argnames=('model', 'tx', 'image_shape', 'ema_decay', 'ema_every'),
        out_shardings=shardings,
    )
    return init(
        jax.random.PRNGKey(seed),
        model=model,
        tx=tx,
        image_shape=tuple(image_shape),
        ema_decay=float(ema_decay),
        ema_every=int(ema_every),
    )


def state_from_config(
    config: ConfigDict, task: Task, *, image_shape: Sequence[int], plan: Plan, shardings: Any = None
) -> tuple[TrainState, Any]:
    """(initial TrainState, learning-rate schedule) for `task` as a config describes them: what fit() trains and
    the target a trained run's checkpoint is restored into. `plan`: the run's durations in steps
    (`jaxdl.config.Plan`); `shardings`: abstract state -> where its leaves live (a runner's `state_shardings`).
    A model whose output does not fit the task is a ConfigError here, before any step."""
    from jaxdl.models import build_model, module_export
    from jaxdl.optim import build_optimizer
    from jaxdl.train.mixing import Mixing

    height, width, channels = image_shape
    model = build_model(config.model, task.num_outputs, task.head_options, image_shape=(height, width, channels))
    layers = module_export(config.model.name, 'LAYER_INDEX') if config.optimizer.layer_decay else None
    tx, schedule = build_optimizer(config.optimizer, plan, layer_index=layers(model) if layers else None)
    ema = {'ema_decay': config.optimizer.ema_decay, 'ema_every': config.optimizer.accumulate_steps}
    abstract = abstract_train_state(model, tx, image_shape=image_shape, **ema)
    images = jax.ShapeDtypeStruct((2, *image_shape), jnp.float32)
    outputs = jax.eval_shape(lambda v, x: abstract.apply_fn(v, x, train=False), abstract.variables, images)
    try:
        task.check_outputs(outputs, (height, width, channels), config.model.name)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:  # a user's task saying so in its own words
        raise ConfigError(f"config key 'model.name': {e}") from None
    state = create_train_state(
        model,
        tx,
        seed=config.seed,
        image_shape=image_shape,
        shardings=shardings(abstract) if shardings else None,
        **ema,
    )
    return (
        state.replace(
            mixing=Mixing.of(config.dataset.augment), normalization=ImageFormat.of(config.dataset).normalization
        ),
        schedule,
    )
