"""The two CPU lowering changes compute the same function as what they replace (benchmarks/xla_cpu.py measures
what they win): the tile max-pool against flax's reduce_window max-pool, gradients and ties included, and a train
step compiled with Eigen's convolutions against one compiled with YNNPACK's."""
import re
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.models.layers.pooling import max_pool
from jaxdl.train.runners import compiler_options, make_runner
from jaxdl.train.step import train_step
from test_models_and_step import batch, make_state


@pytest.mark.parametrize('shape,window', [((3, 8, 8, 5), 2), ((2, 9, 7, 3), 2), ((2, 9, 11, 4), 3)])
def test_tile_max_pool_is_flax_max_pool_bit_for_bit(shape, window):
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, size=shape).astype(np.float32)  # few distinct values: most windows hold ties
    reference = lambda x: nn.max_pool(x, (window, window), strides=(window, window))
    pooled, pool_vjp = jax.vjp(lambda x: max_pool(x, window), x)
    expected, expected_vjp = jax.vjp(reference, x)
    np.testing.assert_array_equal(pooled, expected)
    cotangent = rng.normal(size=expected.shape).astype(np.float32)
    np.testing.assert_array_equal(pool_vjp(cotangent)[0], expected_vjp(cotangent)[0])
    # The ties matter: jnp.max's own gradient splits among them and would not pass the line above.
    b, h, w, c = shape
    naive = lambda x: jnp.max(x[:, :h - h % window, :w - w % window].reshape(
        b, h // window, window, w // window, window, c), axis=(2, 4))
    assert not np.array_equal(jax.vjp(naive, x)[1](cotangent)[0], expected_vjp(cotangent)[0])


def test_models_train_through_the_tile_max_pool_as_through_flax():
    """Training the CNN with either pool gives the same parameters, bit for bit."""
    import jaxdl.models.cnn as cnn
    state, task = make_state()
    step = jax.jit(lambda s, b: train_step(s, b, task=task))
    trained = state
    for seed in range(3):
        trained, _ = step(trained, batch(seed=seed))
    original = cnn.max_pool
    try:
        cnn.max_pool = lambda x, window: nn.max_pool(x, (window, window), strides=(window, window))
        flax_state, _ = make_state()
        flax_step = jax.jit(lambda s, b: train_step(s, b, task=task))
        for seed in range(3):
            flax_state, _ = flax_step(flax_state, batch(seed=seed))
    finally:
        cnn.max_pool = original
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, trained.params, flax_state.params)))


def _convolutions_in_ynnpack_fusions(hlo_text: str) -> int:
    """Convolutions inside the computations that YNNPACK fusions (`"kind":"__ynn_fusion"`) call."""
    called = set(re.findall(r'calls=(%[\w.]+).*"kind":"__ynn_fusion"', hlo_text))
    bodies = re.findall(r'^(%[\w.]+) [^\n]*\{\n(.*?)^\}', hlo_text, flags=re.M | re.S)
    return sum(body.count(' convolution(') for name, body in bodies if name in called)


def _compiled_text(cpu_convolutions, state, task, data):
    step = jax.jit(partial(train_step, task=task), compiler_options=compiler_options(cpu_convolutions))
    return step.lower(state, data).compile().as_text()


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='an XLA:CPU option')
def test_cpu_convolutions_switch_changes_the_kernels_not_the_function():
    state, task = make_state()
    data = batch()
    # The switch acts: YNNPACK fusions hold convolutions by XLA's default and none under 'eigen'.
    assert _convolutions_in_ynnpack_fusions(_compiled_text('ynnpack', state, task, data)) > 0
    assert _convolutions_in_ynnpack_fusions(_compiled_text('eigen', state, task, data)) == 0
    results = {}
    for kernels in ('eigen', 'ynnpack'):
        runner = make_runner('jit', task, kernels)
        s = runner.place_state(make_state()[0])  # a fresh copy: the runner donates the state it is given
        for seed in range(5):
            s, sums = runner.train(s, batch(seed=seed))
        results[kernels] = jax.device_get((s.params, sums))
    for eigen, ynnpack in zip(jax.tree.leaves(results['eigen']), jax.tree.leaves(results['ynnpack'])):
        np.testing.assert_allclose(eigen, ynnpack, rtol=2e-5, atol=2e-6)
    # ...yet different kernels (else the comparison above says nothing about the switch)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(results['eigen']),
                                                        jax.tree.leaves(results['ynnpack'])))


def test_compiler_options_only_name_the_cpu():
    assert compiler_options('ynnpack') is None
    if jax.default_backend() == 'cpu':
        assert compiler_options('eigen') == {'xla_cpu_experimental_ynn_fusion_type':
                                             'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'}
    with pytest.raises(ValueError, match="one of eigen, ynnpack"):
        compiler_options('onednn')
