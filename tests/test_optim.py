import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.config import ConfigError, Plan, apply_updates, default_config
from jaxdl.optim import OPTIMIZERS, build_optimizer, build_schedule


def optimizer(total_steps=100, steps_per_epoch=10, **updates):
    """(optimizer config, the run's plan) for a run of `total_steps` with `updates` to the optimizer config."""
    config = apply_updates(default_config(), {'optimizer.' + k.replace('__', '.'): v for k, v in updates.items()})
    config.train.duration = f'{total_steps} steps'
    return config.optimizer, Plan.resolve(config, steps_per_epoch)


@pytest.mark.parametrize('name', OPTIMIZERS)
def test_each_optimizer_minimises_a_quadratic(name):
    tx, _ = build_optimizer(*optimizer(name=name, learning_rate=0.05, total_steps=200))
    params = {'w': jnp.array([3.0, -2.0])}
    state = tx.init(params)
    loss = lambda p: jnp.sum(p['w'] ** 2)
    for _ in range(200):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    assert loss(params) < 0.1 * 13.0


def test_unknown_optimizer_lists_valid_names():
    with pytest.raises(ConfigError, match='valid: sgd, rmsprop, adam, adamw'):
        build_optimizer(*optimizer(name='sgdd'))
    with pytest.raises(ConfigError, match="did you mean 'piecewise'"):
        build_schedule(*optimizer(schedule__name='piecewize'))


def test_piecewise_drops_every_n_epochs_after_warmup():
    schedule = build_schedule(*optimizer(learning_rate=1.0, schedule__name='piecewise', schedule__drop_every='2 epochs',
                                         schedule__drop_factor=0.1))
    assert [float(schedule(s)) for s in (0, 19, 20, 39, 40)] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


def test_linear_warmup_then_cosine_to_final_fraction():
    schedule = build_schedule(*optimizer(learning_rate=1.0, schedule__name='cosine', schedule__warmup='10 steps',
                                         schedule__final_fraction=0.1, total_steps=110))
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(1.0)
    assert float(schedule(110)) == pytest.approx(0.1)


def test_clipping_bounds_the_update_norm():
    tx, _ = build_optimizer(*optimizer(name='sgd', learning_rate=1.0, momentum=0.0, clip_global_norm=0.5))
    params = {'w': jnp.ones(4)}
    updates, _ = tx.update({'w': jnp.full(4, 100.0)}, tx.init(params), params)
    assert float(optax.global_norm(updates)) == pytest.approx(0.5)


def test_weight_decay_spares_biases():
    tx, _ = build_optimizer(*optimizer(name='sgd', learning_rate=1.0, momentum=0.0, weight_decay=0.1))
    params = {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(updates['kernel'], -0.1)
    np.testing.assert_allclose(updates['bias'], 0.0)


def test_gradient_accumulation_applies_the_mean_every_k_steps_at_the_scheduled_rate():
    # The rate drops tenfold every 3 steps, and 3 micro-steps make one update: update u runs at 0.1**u, and the
    # schedule the loop logs maps train step s to update s // 3.
    tx, schedule = build_optimizer(*optimizer(name='sgd', learning_rate=1.0, momentum=0.0, accumulate_steps=3,
                                              schedule__name='piecewise', schedule__drop_every='3 steps',
                                              schedule__drop_factor=0.1, total_steps=90))
    params = {'w': jnp.zeros(1)}
    state = tx.init(params)
    applied = []
    for step, g in enumerate([1.0, 2.0, 6.0] * 3):
        before = float(params['w'][0])
        updates, state = tx.update({'w': jnp.array([g])}, state, params)
        params = optax.apply_updates(params, updates)
        applied.append(before - float(params['w'][0]))
    # Nothing before each 3rd micro-step; then the mean gradient (3.0) at that update's rate.
    np.testing.assert_allclose(applied, [0, 0, 3.0, 0, 0, 0.3, 0, 0, 0.03], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose([float(schedule(s)) for s in range(9)], [1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01],
                               rtol=1e-6)
