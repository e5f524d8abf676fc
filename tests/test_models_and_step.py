"""Models, the classification task's metric sums and the pure train/eval steps on one device."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdl
from jaxdl.config import Plan, apply_updates, default_config
from jaxdl.models import build_model
from jaxdl.optim import build_optimizer
from jaxdl.tasks import build_task


SMALL_MODELS = {'cnn': {'features': (8, 16), 'dense': 32}, 'resnet': {'depth': 10, 'width': 8, 'stem': 'small'}}


def make_state(model_name='cnn', dropout=0.0, seed=0, **model_updates):
    options = {**SMALL_MODELS[model_name], **({'dropout': dropout} if model_name == 'cnn' else {})}
    config = apply_updates(default_config(), {'model.name': model_name, 'model.options': options, **model_updates})
    model = build_model(config.model, 10)
    config.train.duration = '100 steps'
    tx, _ = build_optimizer(config.optimizer, Plan.resolve(config, 10))
    return jaxdl.create_train_state(model, tx, seed=seed, image_shape=(8, 8, 1)), build_task(config.task, 10)


def batch(n=32, seed=0, valid=None):
    rng = np.random.default_rng(seed)
    return {'image': rng.normal(size=(n, 8, 8, 1)).astype(np.float32),
            'label': rng.integers(0, 10, n).astype(np.int32),
            'valid': np.ones(n, bool) if valid is None else valid}


@pytest.mark.parametrize('name', ['cnn', 'resnet'])
def test_models_are_backbone_plus_head(name):
    state, task = make_state(name)
    assert set(state.params) == {'backbone', 'head'}
    logits = state.apply_fn(state.variables, batch()['image'])
    assert logits.shape == (32, 10) and logits.dtype == jnp.float32
    probabilities = task.predict(logits)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)


def test_resnet_carries_batchnorm_statistics_in_the_state():
    state, task = make_state('resnet')
    assert 'batch_stats' in state.model_state
    new_state, _ = jax.jit(lambda s, b: jaxdl.train_step(s, b, task=task))(state, batch())
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), new_state.model_state, state.model_state)
    assert any(jax.tree.leaves(changed))


def test_train_step_learns_a_fixed_batch_and_is_deterministic():
    state, task = make_state(**{'optimizer.name': 'adam', 'optimizer.learning_rate': 0.01})
    step = jax.jit(lambda s, b: jaxdl.train_step(s, b, task=task))
    fixed = batch()
    first_loss = None
    s = state
    for _ in range(30):
        s, metrics = step(s, fixed)
        first_loss = first_loss if first_loss is not None else float(metrics.sums['loss_sum'])
    assert float(metrics.sums['loss_sum']) < 0.3 * first_loss
    assert int(s.step) == 30
    again = state
    for _ in range(30):
        again, _ = step(again, fixed)
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, again.params, s.params)))


def test_dropout_randomness_comes_from_the_step_number():
    state, task = make_state(dropout=0.5)
    step = jax.jit(lambda s, b: jaxdl.train_step(s, b, task=task))
    fixed = batch()
    _, m0 = step(state, fixed)
    _, m0_again = step(state, fixed)
    _, m1 = step(state.replace(step=state.step + 1), fixed)
    assert float(m0.sums['loss_sum']) == float(m0_again.sums['loss_sum'])
    assert float(m0.sums['loss_sum']) != float(m1.sums['loss_sum'])


def test_eval_sums_match_numpy_and_ignore_padding():
    state, task = make_state()
    valid = np.array([True] * 27 + [False] * 5)
    b = batch(valid=valid)
    sums, _ = jax.device_get(jax.jit(lambda s, b: jaxdl.eval_step(s, b, task=task))(state, b))
    logits = np.asarray(state.apply_fn(state.variables, b['image']), np.float64)[:27]
    labels = b['label'][:27]
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    probs = np.exp(logp)
    pred = logits.argmax(-1)
    assert sums['count'] == 27
    np.testing.assert_allclose(sums['loss_sum'], -logp[np.arange(27), labels].sum(), rtol=1e-5)
    assert sums['correct'] == (pred == labels).sum()
    np.testing.assert_allclose(sums['confidence_sum'], probs.max(-1).sum(), rtol=1e-5)
    confusion = np.zeros((10, 10))
    np.add.at(confusion, (labels, pred), 1)
    np.testing.assert_array_equal(sums['confusion'], confusion)
    top5 = np.argsort(-logits, -1)[:, :5]
    assert sums['top_k_correct'] == (top5 == labels[:, None]).any(-1).sum()
    summary = task.summarize(sums)
    bins = np.minimum((probs.max(-1) * 15).astype(int), 14)
    ece = sum(abs((pred == labels)[bins == k].sum() - probs.max(-1)[bins == k].sum()) for k in range(15)) / 27
    assert summary['expected_calibration_error'] == pytest.approx(ece, abs=1e-6)
    assert summary['accuracy'] == pytest.approx((pred == labels).mean())


def test_predict_returns_probabilities_for_any_count():
    state, task = make_state()
    probabilities = jaxdl.predict(state, batch(n=5)['image'], task, batch_size=4)
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)


def test_the_step_path_imports_no_tensorflow():
    """A GPU machine may have jax with CUDA but no TensorFlow (too large to bring along): config, model, task,
    optimizer, state and the jitted steps must not import it."""
    import subprocess
    import sys
    code = '''
import sys
from functools import partial
import jax, numpy as np
import jaxdl
config = jaxdl.default_config()
config.model.options.features = (8,)
task = jaxdl.build_task(config.task, 10)
model = jaxdl.build_model(config.model, task.num_outputs, task.head_options)
tx, _ = jaxdl.build_optimizer(config.optimizer, jaxdl.Plan.resolve(config, steps_per_epoch=10))
state = jaxdl.create_train_state(model, tx, seed=0, image_shape=(8, 8, 1))
batch = {'image': np.zeros((4, 8, 8, 1), np.float32), 'label': np.zeros(4, np.int32), 'valid': np.ones(4, bool)}
state, metrics = jax.jit(partial(jaxdl.train_step, task=task))(state, batch)
sums, _ = jax.jit(partial(jaxdl.eval_step, task=task))(state, batch)
loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets', 'keras'))
assert not loaded, loaded[:5]
print('ok', task.summarize(jax.device_get(sums))['count'])
'''
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith('ok 4'), result.stderr[-2000:]
