import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.config import ConfigError, apply_updates, default_config
from jaxdl.optim import OPTIMIZERS, build_optimizer, build_schedule


def opt_config(**updates):
    return apply_updates(default_config(), {'optimizer.' + k.replace('__', '.'): v for k, v in updates.items()}).optimizer


@pytest.mark.parametrize('name', OPTIMIZERS)
def test_each_optimizer_minimises_a_quadratic(name):
    tx, _ = build_optimizer(opt_config(name=name, learning_rate=0.05), steps_per_epoch=10, total_steps=200)
    params = {'w': jnp.array([3.0, -2.0])}
    state = tx.init(params)
    loss = lambda p: jnp.sum(p['w'] ** 2)
    for _ in range(200):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    assert loss(params) < 0.1 * 13.0


def test_unknown_optimizer_lists_valid_names():
    with pytest.raises(ConfigError, match='valid: sgd, rmsprop, adam, adamw'):
        build_optimizer(opt_config(name='sgdd'), 10, 100)
    with pytest.raises(ConfigError, match="did you mean 'piecewise'"):
        build_schedule(opt_config(schedule__name='piecewize'), 10, 100)


def test_piecewise_drops_every_n_epochs_after_warmup():
    schedule = build_schedule(opt_config(learning_rate=1.0, schedule__name='piecewise', schedule__drop_every='2 epochs',
                                         schedule__drop_factor=0.1), steps_per_epoch=10, total_steps=100)
    assert [float(schedule(s)) for s in (0, 19, 20, 39, 40)] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


def test_linear_warmup_then_cosine_to_final_fraction():
    schedule = build_schedule(opt_config(learning_rate=1.0, schedule__name='cosine', schedule__warmup='10 steps',
                                         schedule__final_fraction=0.1), steps_per_epoch=10, total_steps=110)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(1.0)
    assert float(schedule(110)) == pytest.approx(0.1)


def test_clipping_bounds_the_update_norm():
    tx, _ = build_optimizer(opt_config(name='sgd', learning_rate=1.0, momentum=0.0, clip_global_norm=0.5), 10, 100)
    params = {'w': jnp.ones(4)}
    updates, _ = tx.update({'w': jnp.full(4, 100.0)}, tx.init(params), params)
    assert float(optax.global_norm(updates)) == pytest.approx(0.5)


def test_weight_decay_spares_biases():
    tx, _ = build_optimizer(opt_config(name='sgd', learning_rate=1.0, momentum=0.0, weight_decay=0.1), 10, 100)
    params = {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(updates['kernel'], -0.1)
    np.testing.assert_allclose(updates['bias'], 0.0)


def test_gradient_accumulation_applies_the_mean_every_k_steps():
    tx, schedule = build_optimizer(opt_config(name='sgd', learning_rate=1.0, momentum=0.0, accumulate_steps=3), 10, 90)
    params = {'w': jnp.zeros(1)}
    state = tx.init(params)
    for g in (1.0, 2.0):
        updates, state = tx.update({'w': jnp.array([g])}, state, params)
        params = optax.apply_updates(params, updates)
        assert float(params['w'][0]) == 0.0  # nothing applied before the 3rd micro-step
    updates, state = tx.update({'w': jnp.array([6.0])}, state, params)
    assert float(optax.apply_updates(params, updates)['w'][0]) == pytest.approx(-3.0)
    assert float(schedule(4)) == 1.0
