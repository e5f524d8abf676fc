"""The EMA of the weights (optimizer.ema_decay): its arithmetic against the closed form, its evaluators, selection
by it, its test figures, evaluate/predict/transfer from it, exact resume, and the bad inputs."""
from functools import partial

import jax
import numpy as np
import pytest

from jaxdl.config import ConfigError, Plan, apply_updates, default_config
from jaxdl.logging import read_jsonl
from jaxdl.train.hooks import Hook
from jaxdl.train.loop import fit


def ema_reference(weights: list, decay: float, every: int = 1):
    """e_0 = w_0; after each optimizer update t (every `every` micro-steps): e_t = d_t e + (1 - d_t) w_t with
    d_t = min(decay, (1 + t) / (10 + t))."""
    ema = weights[0]
    for micro, w in enumerate(weights[1:], start=1):
        if micro % every == 0:
            t = micro // every
            d = min(decay, (1 + t) / (10 + t))
            ema = jax.tree.map(lambda e, x: d * e + (1 - d) * x, ema, w)
    return ema


@pytest.mark.parametrize('every', [1, pytest.param(2, marks=pytest.mark.slow)])
def test_the_ema_of_parameters_and_batch_statistics_is_its_closed_form(every):
    import jaxdl
    from jaxdl.train.state import create_train_state
    config = apply_updates(default_config(), {
        'model.name': 'resnet', 'model.options': {'depth': 10, 'width': 4, 'stem': 'small'},
        'optimizer.name': 'sgd', 'optimizer.learning_rate': 0.1, 'optimizer.accumulate_steps': every})
    task = jaxdl.build_task(config.task, 10)
    model = jaxdl.build_model(config.model, task.num_outputs, task.head_options)
    tx, _ = jaxdl.build_optimizer(config.optimizer, Plan.resolve(config, 10))
    state = create_train_state(model, tx, seed=0, image_shape=(8, 8, 1), ema_decay=0.5, ema_every=every)
    rng = np.random.default_rng(0)
    step = jax.jit(partial(jaxdl.train_step, task=task))
    weights = [jax.device_get({'params': state.params, 'model_state': state.model_state})]
    for _ in range(12):  # d_t reaches 0.5 at t = 8: the warmup and the plateau
        batch = {'image': rng.normal(size=(16, 8, 8, 1)).astype(np.float32),
                 'label': rng.integers(0, 10, 16).astype(np.int32), 'valid': np.ones(16, bool)}
        state, _ = step(state, batch)
        weights.append(jax.device_get({'params': state.params, 'model_state': state.model_state}))
    expected = ema_reference(weights, 0.5, every)
    assert jax.tree.structure(expected) == jax.tree.structure(state.ema)
    for a, b in zip(jax.tree.leaves(state.ema), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(jax.tree.leaves(state.ema['params'])[0], jax.tree.leaves(state.params)[0])


@pytest.fixture(scope='module')
def ema_run(tmp_path_factory):
    from jaxdl.config import load_config_file
    from conftest import ROOT
    config = apply_updates(load_config_file(str(ROOT / 'tests' / 'small_experiment.py')), {
        'optimizer.ema_decay': 0.9, 'train.select': 'best_ema', 'train.validate_every': '10 steps',
        'optimizer.learning_rate': 0.2})
    return fit(config, tmp_path_factory.mktemp('ema') / 'run', show_progress=False)


def test_validation_and_test_report_the_raw_and_the_ema_weights_and_selection_reads_the_chosen(ema_run):
    from jaxdl.runs import evaluate_run
    records = read_jsonl(ema_run.workdir / 'metrics.jsonl')
    raw = {r['step']: r for r in records if r['split'] == 'validation'}
    ema = {r['step']: r for r in records if r['split'] == 'validation_ema'}
    assert sorted(raw) == sorted(ema) == [10, 20, 30, 38]
    assert any(raw[s]['loss'] != ema[s]['loss'] for s in raw)
    summary = ema_run.summary
    assert summary['selected_step'] == min(ema, key=lambda s: ema[s]['loss'])  # by the EMA's loss
    assert summary['best_validation_loss'] == min(r['loss'] for r in ema.values())
    assert summary['validation_ema']['loss'] == ema[summary['selected_step']]['loss']
    assert summary['test_ema']['accuracy'] != summary['test']['accuracy']
    tests = {r['split']: r for r in records if r['split'].startswith('test')}
    assert set(tests) == {'test', 'test_ema'}
    # `jaxdl evaluate --weights ema` scores the selected checkpoint's EMA: summary's test_ema
    again = evaluate_run(ema_run.workdir, 'test', 'best', weights='ema')
    assert again['loss'] == pytest.approx(summary['test_ema']['loss'], rel=1e-6)
    assert evaluate_run(ema_run.workdir, 'test', 'best')['loss'] == pytest.approx(summary['test']['loss'], rel=1e-6)


def test_a_run_starts_from_another_runs_ema_weights(ema_run, make_config, tmp_path):
    from jaxdl.runs import load_run
    from jaxdl.transfer import initialize_from
    from jaxdl.train.state import state_from_config
    import jaxdl
    config = make_config(transfer__init_from=str(ema_run.workdir), transfer__weights='ema', transfer__reinitialize=())
    task = jaxdl.build_task(config.task, 10)
    state, _ = state_from_config(config, task, image_shape=(8, 8, 1), plan=Plan.resolve(config, 19))
    started, _ = initialize_from(state, config.transfer, config.model)
    source = load_run(ema_run.workdir, 'best', weights='ema').state
    for a, b in zip(jax.tree.leaves(started.params), jax.tree.leaves(source.params)):
        np.testing.assert_array_equal(a, b)


class CrashAfter(Hook):
    def __init__(self, step):
        self.step = step

    def end_of_step(self, run, step):
        if step == self.step:
            raise RuntimeError('crash')


def test_a_resumed_run_has_the_ema_of_a_run_never_stopped(make_config, tmp_path):
    from jaxdl.runs import load_run
    config = make_config(optimizer__ema_decay=0.8, train__duration='16 steps', train__checkpoint_every='5 steps',
                         train__validate_every='8 steps', train__trackers=(), train__select='last')
    whole = fit(config, tmp_path / 'whole', show_progress=False).state  # the final state, in memory
    with pytest.raises(RuntimeError, match='crash'):
        fit(config, tmp_path / 'resumed', show_progress=False, hooks=[CrashAfter(7)])
    resumed = fit(config, tmp_path / 'resumed', show_progress=False).state  # resumed from step 5's checkpoint
    saved = load_run(tmp_path / 'resumed', 'latest', weights='ema').state
    for a, b, c in zip(jax.tree.leaves(whole.ema), jax.tree.leaves(resumed.ema),
                       jax.tree.leaves({'params': saved.params, 'model_state': saved.model_state}), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_bad_ema_settings_are_one_line_naming_the_key(make_config, tmp_path):
    from jaxdl.errors import TransferError
    from jaxdl.runs import evaluate_run
    for overrides, expected in (({'optimizer__ema_decay': 1.0}, 'optimizer.ema_decay'),
                                ({'optimizer__ema_decay': -0.1}, 'optimizer.ema_decay'),
                                ({'train__select': 'best_ema'}, "'best_ema' selects by the EMA")):
        with pytest.raises(ConfigError, match=expected):
            fit(make_config(**overrides), tmp_path / 'bad', show_progress=False)
    plain = fit(make_config(train__duration='4 steps', train__trackers=()), tmp_path / 'plain', show_progress=False)
    with pytest.raises(ConfigError, match='--weights ema: the run in .* was trained without an EMA'):
        evaluate_run(plain.workdir, 'test', weights='ema')
    config = make_config(transfer__init_from=str(plain.workdir), transfer__weights='ema', train__duration='4 steps')
    with pytest.raises(TransferError, match="transfer.weights='ema'"):
        fit(config, tmp_path / 'from_plain', show_progress=False)


def test_the_cli_evaluates_the_ema_weights(ema_run):
    import json
    from conftest import jaxdl
    result = jaxdl('evaluate', ema_run.workdir, '--weights', 'ema')
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert out['weights'] == 'ema' and out['loss'] == pytest.approx(ema_run.summary['test_ema']['loss'], rel=1e-6)
