"""The recipe's parts beside the EMA (tests/test_ema.py): stochastic depth, and learning-rate multipliers (groups and
layer-wise decay) in one optimizer structure."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.config import ConfigError, Plan, apply_updates, default_config
from jaxdl.models.layers.drop_path import drop_path, drop_path_rates


def test_drop_path_drops_whole_examples_at_its_rate_and_keeps_the_expectation():
    x = jnp.ones((40000, 3, 3, 2))
    y = np.asarray(drop_path(0.3, True, x.ndim).apply({}, x, rngs={'dropout': jax.random.PRNGKey(0)}))
    per_example = y.reshape(len(y), -1)
    assert np.all(per_example == per_example[:, :1])  # one draw per example
    dropped = np.mean(per_example[:, 0] == 0)
    assert abs(dropped - 0.3) < 0.01
    assert np.unique(per_example) == pytest.approx([0.0, 1 / 0.7])
    assert abs(y.mean() - 1.0) < 0.015  # the expectation is unchanged
    np.testing.assert_array_equal(drop_path(0.3, False, x.ndim).apply({}, x), x)  # evaluation: identity
    assert drop_path_rates(0.3, 4) == pytest.approx([0.0, 0.1, 0.2, 0.3])


@pytest.mark.parametrize('name,options', [('vit', {'depth': 3, 'width': 16, 'heads': 2, 'mlp': 32, 'patch': 4}),
                                          ('resnet', {'depth': 10, 'width': 4, 'stem': 'small'})])
def test_a_model_with_drop_path_is_random_in_training_and_the_same_network_in_evaluation(name, options):
    import jaxdl
    build = lambda rate: jaxdl.build_model(apply_updates(default_config(), {
        'model.name': name, 'model.options': {**options, 'drop_path': rate}}).model, 10)
    model, plain = build(0.5), build(0.0)
    variables = plain.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))
    # trained-like weights: a fresh ResNet's residual branches end in a zero BatchNorm scale, so output nothing
    variables = {**variables, 'params': jax.tree.map(lambda w: w + 0.3, variables['params'])}
    assert jax.tree.structure(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))) == \
        jax.tree.structure(variables)  # the same parameters: weights load either way
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 8, 8, 1))
    train = lambda m, seed: m.apply(variables, x, train=True, rngs={'dropout': jax.random.PRNGKey(seed)},
                                    mutable=['batch_stats'])[0]
    assert not np.allclose(train(model, 1), train(model, 2))
    np.testing.assert_array_equal(train(plain, 1), train(plain, 2))
    np.testing.assert_allclose(model.apply(variables, x), plain.apply(variables, x), rtol=1e-6)


def vit_and_params(depth=2):
    import jaxdl
    config = apply_updates(default_config(), {'model.name': 'vit', 'model.options': {
        'depth': depth, 'width': 8, 'heads': 2, 'mlp': 16, 'patch': 4}})
    model = jaxdl.build_model(config.model, 10)
    return model, model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))['params']


def first_update(model, params, **optimizer):
    from jaxdl.models.vit import LAYER_INDEX
    from jaxdl.optim import build_optimizer
    config = apply_updates(default_config(), {'optimizer.name': 'sgd', 'optimizer.momentum': 0.0,
                                              'optimizer.learning_rate': 1.0, **optimizer})
    tx, _ = build_optimizer(config.optimizer, Plan.resolve(config, 10), layer_index=LAYER_INDEX(model))
    state = tx.init(params)
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    return updates, state


def test_layer_decay_scales_each_layer_and_multiplies_with_the_groups():
    from jaxdl.parameter_paths import flat_paths
    model, params = vit_and_params(depth=2)  # 4 layers: embeddings, block_0, block_1, norm and head
    updates, _ = first_update(model, params, **{'optimizer.layer_decay': 0.5,
                                                'optimizer.groups': (('head', 0.1), ('backbone/patch_embedding', 0))})
    rate = {path: -float(np.ravel(u)[0]) for path, u in flat_paths(updates).items()}
    expected = {'backbone/patch_embedding': 0.0, 'backbone/cls': 0.125, 'backbone/position_embedding': 0.125,
                'backbone/block_0': 0.25, 'backbone/block_1': 0.5, 'backbone/norm': 1.0, 'head': 0.1}
    for path, value in rate.items():
        prefix = next(p for p in expected if path.startswith(p))
        assert value == pytest.approx(expected[prefix]), path


def test_the_optimizer_state_has_one_structure_whatever_the_grouping():
    model, params = vit_and_params()
    structures = {jax.tree.structure(first_update(model, params, **settings)[1]) for settings in (
        {'optimizer.groups': (('head', 0.1),)}, {'optimizer.groups': (('backbone', 0), ('head', 2.0))},
        {'optimizer.layer_decay': 0.75}, {'optimizer.layer_decay': 0.75, 'optimizer.groups': (('head', 0.5),)})}
    assert len(structures) == 1


@pytest.mark.parametrize('name', ['sgd', 'adam', 'adamw'])
def test_a_multiplier_after_the_optimizer_is_the_optimizer_at_that_multiple_of_the_rate(name):
    from jaxdl.optim import build_optimizer
    params = {'backbone': {'w': jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}, 'head': {'w': jnp.ones((3, 2))}}
    config = apply_updates(default_config(), {'optimizer.name': name, 'optimizer.learning_rate': 0.1,
                                              'optimizer.weight_decay': 0.01, 'optimizer.groups': (('backbone', 0.3),)})
    tx, _ = build_optimizer(config.optimizer, Plan.resolve(config, 10))
    make = {'sgd': lambda lr: optax.chain(optax.add_decayed_weights(0.01), optax.sgd(lr, momentum=0.9)),
            'adam': lambda lr: optax.chain(optax.add_decayed_weights(0.01), optax.adam(lr)),
            'adamw': lambda lr: optax.adamw(lr, weight_decay=0.01)}[name]
    reference = {'backbone': make(0.03), 'head': make(0.1)}
    state, states = tx.init(params), {k: reference[k].init(params[k]) for k in params}
    p, q = params, dict(params)
    for i in range(5):
        grads = jax.tree.map(lambda x: jnp.sin(x * (i + 1)), p)
        updates, state = tx.update(grads, state, p)
        p = optax.apply_updates(p, updates)
        for k in q:
            g = jax.tree.map(lambda x: jnp.sin(x * (i + 1)), q[k])
            u, states[k] = reference[k].update(g, states[k], q[k])
            q[k] = optax.apply_updates(q[k], u)
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_layer_decay_on_a_model_without_a_layer_index_and_out_of_range_is_one_line(make_config, tmp_path):
    from jaxdl.train.loop import fit
    with pytest.raises(ConfigError, match="'optimizer.layer_decay': this model has no layer index"):
        fit(make_config(optimizer__layer_decay=0.75), tmp_path / 'cnn', show_progress=False)
    with pytest.raises(ConfigError, match=r"'optimizer.layer_decay': must be in \[0, 1\]"):
        fit(make_config(optimizer__layer_decay=1.5), tmp_path / 'cnn', show_progress=False)
    with pytest.raises(ConfigError, match="'model.options.drop_path': must be in"):
        fit(make_config(model__name='resnet', model__options={'depth': 10, 'width': 4, 'stem': 'small',
                                                              'drop_path': 1.0}), tmp_path / 'r', show_progress=False)
