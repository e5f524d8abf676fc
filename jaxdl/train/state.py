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


@partial(jax.jit, static_argnames=('model', 'image_shape'))
def _initial_variables(key, model, image_shape: tuple[int, ...]) -> dict:
    """Jitted (an un-jitted Flax init costs seconds on CPU) and cached by the model's value: Flax modules are
    hashable dataclasses, so rebuilding a run's model (evaluate, predict, transfer) reuses the compiled init."""
    return model.init({'params': key, 'dropout': key}, jnp.zeros((1, *image_shape), jnp.float32), train=False)


def create_train_state(model, tx: optax.GradientTransformation, *, seed: int, image_shape) -> TrainState:
    """Initialises parameters and optimizer state of a flax Module `model` (applied as
    `model.apply(variables, images, train=...)`; see jaxdl.models)."""
    from jaxdl.models import ModelApply
    init_key, state_key = jax.random.split(jax.random.PRNGKey(seed))
    variables = dict(_initial_variables(init_key, model, tuple(image_shape)))
    if 'params' not in variables:
        raise ValueError(f'{type(model).__name__} has no parameters to train (its init gave {sorted(variables)})')
    params = variables.pop('params')
    model_state, opt_state = variables, jax.jit(tx.init)(params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                      opt_state=opt_state, rng=state_key, apply_fn=ModelApply(model), tx=tx)


def state_from_config(config, task, *, image_shape, plan):
    """(initial TrainState, learning-rate schedule) for `task` as a config describes them: what fit() trains and
    the target a trained run's checkpoint is restored into. `plan`: the run's durations in steps
    (`jaxdl.config.Plan`). A model whose output does not fit the task is a ConfigError here, before any step."""
    from jaxdl.models import build_model
    from jaxdl.optim import build_optimizer
    tx, schedule = build_optimizer(config.optimizer, plan)
    model = build_model(config.model, task.num_outputs, task.head_options)
    state = create_train_state(model, tx, seed=config.seed, image_shape=tuple(image_shape))
    images = jax.ShapeDtypeStruct((2, *image_shape), jnp.float32)
    outputs = jax.eval_shape(lambda v, x: state.apply_fn(v, x, train=False), state.variables, images)
    try:
        task.check_outputs(outputs, tuple(image_shape), config.model.name)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:  # a user's task saying so in its own words
        raise ConfigError(f"config key 'model.name': {e}") from None
    return state, schedule
