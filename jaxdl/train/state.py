"""TrainState: everything a step reads or changes, as one pytree (apply_fn and tx are static)."""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxdl.errors import ConfigError


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # int32 scalar: train steps taken (micro-steps when gradients accumulate)
    params: Any              # the 'params' collection
    model_state: Any         # every other collection (e.g. 'batch_stats'); {} for stateless models
    opt_state: Any
    rng: jax.Array           # raw uint32[2] key: plain data, so a checkpoint restores with orbax alone
    apply_fn: Callable = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

    @property
    def variables(self) -> dict:
        return {'params': self.params, **self.model_state}

    def apply_gradients(self, grads, model_state) -> 'TrainState':
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                            model_state=model_state, opt_state=opt_state)

    def to_checkpoint(self) -> dict:
        """The saved tree: plain arrays in nested dicts, restorable by orbax without jaxdl."""
        return {'step': self.step, 'params': self.params, 'model_state': self.model_state,
                'opt_state': self.opt_state, 'rng': self.rng}

    def from_checkpoint(self, tree: dict) -> 'TrainState':
        return self.replace(**tree)


def _initial_state(key, model, tx, image_shape: tuple[int, ...]) -> TrainState:
    from jaxdl.models import ModelApply
    init_key, state_key = jax.random.split(key)
    variables = dict(model.init({'params': init_key, 'dropout': init_key}, jnp.zeros((1, *image_shape), jnp.float32),
                                train=False))
    if 'params' not in variables:
        raise ValueError(f'{type(model).__name__} has no parameters to train (its init gave {sorted(variables)})')
    params = variables.pop('params')
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=variables,
                      opt_state=tx.init(params), rng=state_key, apply_fn=ModelApply(model), tx=tx)


def abstract_train_state(model, tx: optax.GradientTransformation, *, image_shape) -> TrainState:
    """The shapes and dtypes of the state create_train_state makes, without computing it."""
    return jax.eval_shape(partial(_initial_state, model=model, tx=tx, image_shape=tuple(image_shape)),
                          jax.random.PRNGKey(0))


def create_train_state(model, tx: optax.GradientTransformation, *, seed: int, image_shape,
                       shardings=None) -> TrainState:
    """Initialises parameters and optimizer state of a flax Module `model` (applied as
    `model.apply(variables, images, train=...)`; see jaxdl.models), in one compiled function (an un-jitted Flax
    init costs seconds on CPU). `shardings` (a TrainState of NamedShardings, e.g. `runner.state_shardings(...)`)
    creates each leaf where it will live, split over devices, never whole on one of them."""
    # Static model, optimizer and shape: the compiled init is reused for the same model value and optimizer.
    init = jax.jit(_initial_state, static_argnames=('model', 'tx', 'image_shape'), out_shardings=shardings)
    return init(jax.random.PRNGKey(seed), model=model, tx=tx, image_shape=tuple(image_shape))


def state_from_config(config, task, *, image_shape, plan, shardings=None):
    """(initial TrainState, learning-rate schedule) for `task` as a config describes them: what fit() trains and
    the target a trained run's checkpoint is restored into. `plan`: the run's durations in steps
    (`jaxdl.config.Plan`); `shardings`: abstract state -> where its leaves live (a runner's `state_shardings`).
    A model whose output does not fit the task is a ConfigError here, before any step."""
    from jaxdl.models import build_model
    from jaxdl.optim import build_optimizer
    tx, schedule = build_optimizer(config.optimizer, plan)
    model = build_model(config.model, task.num_outputs, task.head_options, image_shape=tuple(image_shape))
    abstract = abstract_train_state(model, tx, image_shape=image_shape)
    images = jax.ShapeDtypeStruct((2, *image_shape), jnp.float32)
    outputs = jax.eval_shape(lambda v, x: abstract.apply_fn(v, x, train=False), abstract.variables, images)
    try:
        task.check_outputs(outputs, tuple(image_shape), config.model.name)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:  # a user's task saying so in its own words
        raise ConfigError(f"config key 'model.name': {e}") from None
    state = create_train_state(model, tx, seed=config.seed, image_shape=image_shape,
                               shardings=shardings(abstract) if shardings else None)
    return state, schedule
