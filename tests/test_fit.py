"""fit(): run directory, reproducibility, orbax-only restore, split-aware selection (resume: tests/test_resume.py)."""
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.checkpoint import Checkpoints
from jaxdl.config import ConfigError, to_json
from jaxdl.errors import CheckpointError
from jaxdl.runs import load_run
from jaxdl.logging import TIMING_KEYS, read_jsonl
from jaxdl.train.loop import fit
from conftest import run


def records_without_timings(workdir):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_jsonl(workdir / 'metrics.jsonl')]


def assert_same_params(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory, data_dir):
    from jaxdl.config import apply_updates, default_config
    config = default_config()
    apply_updates(config, {'dataset.mean': (0.5,), 'dataset.std': (0.5,), 'model.options.features': (8, 16),
                           'model.options.dense': 32, 'optimizer.learning_rate': 0.05, 'train.batch_size': 64,
                           'train.eval_batch_size': 128, 'train.duration': '3 epochs', 'train.log_every': '5 steps'})
    workdir = tmp_path_factory.mktemp('run') / 'a'
    return config, fit(config, workdir, show_progress=False)


def test_run_directory_holds_every_record(finished_run):
    config, result = finished_run
    workdir = result.workdir
    for name in ('config.json', 'environment.json', 'metrics.jsonl', 'progress.png', 'summary.json'):
        assert (workdir / name).is_file(), name
    assert list((workdir / 'tensorboard').glob('events.out.tfevents.*'))
    environment = json.loads((workdir / 'environment.json').read_text())
    assert environment['seed'] == 0 and environment['versions']['jax'] == jax.__version__
    assert 'git_revision' in environment and environment['dataset']['sizes']['test'] == 359
    assert json.loads((workdir / 'config.json').read_text()) == json.loads(to_json(config))
    records = read_jsonl(workdir / 'metrics.jsonl')
    validation = [r for r in records if r['split'] == 'validation']
    assert [r['step'] for r in validation] == [19, 38, 57]  # once an epoch
    assert all({'loss', 'accuracy', 'confidence'} <= set(r) for r in records)
    test = [r for r in records if r['split'] == 'test']
    assert len(test) == 1 and test[0]['count'] == 359  # test evaluated once, every example
    summary = result.summary
    assert summary['stop_reason'] == 'completed' and summary['final_step'] == 57
    assert summary['selected_step'] == summary['best_step']
    assert summary['best_validation_loss'] == min(r['loss'] for r in validation)
    assert {'top_5_accuracy', 'confusion_matrix', 'expected_calibration_error'} <= set(summary['test'])
    assert np.sum(summary['test']['confusion_matrix']) == 359


def test_tensorboard_holds_the_records_scalars_the_config_and_the_test_as_a_table(finished_run):
    import tensorflow as tf
    _, result = finished_run
    events, plugins, texts = {}, set(), {}
    for path in (result.workdir / 'tensorboard').glob('events.out.tfevents.*'):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                plugins.add(plugin)
                if plugin == 'scalars':
                    events[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
                elif plugin == 'text':
                    texts[value.tag] = tf.make_ndarray(value.tensor).item().decode()
    records = read_jsonl(result.workdir / 'metrics.jsonl')
    expected = {(f"{r['split']}/{key}", r['step']): float(np.float32(r[key])) for r in records
                for key in ('loss', 'accuracy', 'learning_rate') if key in r and r['split'] != 'test'}
    assert {key: events.get(key) for key in expected} == expected
    assert len([tag for tag, step in events if tag == 'train/loss']) == 14  # 11 log steps (5, 10, ..) + 19, 38, 57
    # The test, written once, is a table (TensorBoard draws a one-point chart as an empty plot); the config is on
    # the HParams dashboard.
    assert not [tag for tag, _ in events if tag.startswith('test/')]
    test = next(r for r in records if r['split'] == 'test')
    assert f"| accuracy | {test['accuracy']:.6g} |" in texts['test']
    assert 'hparams' in plugins


def test_same_config_and_seed_give_identical_records_and_params(finished_run, tmp_path):
    config, first = finished_run
    second = fit(config, tmp_path / 'b', show_progress=False)
    assert records_without_timings(first.workdir) == records_without_timings(second.workdir)
    assert_same_params(first.state.params, second.state.params)
    assert first.summary['test'] == second.summary['test']


def test_checkpoint_restores_with_orbax_alone(finished_run, tmp_path):
    _, result = finished_run
    step = Checkpoints(result.workdir / 'checkpoints', read_only=True).resolve('latest')
    out = tmp_path / 'params.npz'
    code = (
        'import sys, numpy as np, orbax.checkpoint as ocp, jax\n'
        f'restored = ocp.StandardCheckpointer().restore({str(result.workdir / "checkpoints" / str(step) / "state")!r})\n'
        'flat = {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(restored["params"])[0]}\n'
        f'np.savez({str(out)!r}, step=np.asarray(restored["step"]), **flat)\n'
        'assert not any(m.startswith("jaxdl") for m in sys.modules), "jaxdl was imported"\n')
    proc = run([sys.executable, '-c', code], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = np.load(out)
    latest = load_run(result.workdir, 'latest')
    assert int(saved['step']) == step == int(latest.state.step)
    flat = {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(latest.state.params)[0]}
    assert set(flat) == set(saved.files) - {'step'}
    for key, value in flat.items():
        np.testing.assert_array_equal(saved[key], value)


def test_early_stopping_reads_validation_and_best_model_is_tested(tmp_path, make_config):
    # min_delta 10: no validation after the first counts as an improvement, so patience 2 stops at the third.
    config = make_config(train__duration='10 epochs', train__early_stopping__patience=2,
                         train__early_stopping__min_delta=10.0)
    result = fit(config, tmp_path / 'es', show_progress=False)
    assert result.summary['stop_reason'] == 'early_stopping'
    assert result.summary['final_step'] == 3 * 19
    assert result.summary['best_step'] == result.summary['selected_step'] == 19
    test = [r for r in read_jsonl(result.workdir / 'metrics.jsonl') if r['split'] == 'test']
    assert len(test) == 1 and test[0]['step'] == 19
    assert int(result.state.step) == 19
    # the best, and the two latest (a damaged newest one leaves an intact predecessor)
    assert set(Checkpoints(result.workdir / 'checkpoints', read_only=True).all_steps()) == {19, 38, 57}


def test_select_last_tests_the_final_model(tmp_path, make_config):
    config = make_config(train__select='last', train__duration='2 epochs')
    result = fit(config, tmp_path / 'last', show_progress=False)
    assert result.summary['selected_step'] == result.summary['final_step'] == int(result.state.step) == 38


def test_finished_run_is_not_trained_or_tested_again(finished_run, capsys):
    config, result = finished_run
    before = (result.workdir / 'metrics.jsonl').read_text()
    again = fit(config, result.workdir, show_progress=False)
    assert 'holds a finished run' in capsys.readouterr().err
    assert again.summary == result.summary
    assert (result.workdir / 'metrics.jsonl').read_text() == before


def test_resuming_with_another_config_is_refused(finished_run):
    config, result = finished_run
    changed = config.copy_and_resolve_references()
    changed.optimizer.learning_rate = 0.2
    with pytest.raises(ConfigError, match='optimizer.learning_rate'):
        fit(changed, result.workdir, show_progress=False)


def test_missing_checkpoint_is_a_clear_error(tmp_path, finished_run):
    with pytest.raises(CheckpointError, match='not a jaxdl run directory'):
        load_run(tmp_path)
    with pytest.raises(CheckpointError, match='no checkpoint at step 5'):
        load_run(finished_run[1].workdir, 5)


def test_a_catalog_rgb_dataset_trains_end_to_end(tmp_path, make_config):
    import tensorflow_datasets as tfds
    config = make_config(dataset__name='cifar10', dataset__mean=(0.5, 0.5, 0.5), dataset__std=(0.25, 0.25, 0.25),
                         train__batch_size=32, train__eval_batch_size=48,
                         train__duration='2 epochs')
    with tfds.testing.mock_data(num_examples=100):
        result = fit(config, tmp_path / 'cifar', show_progress=False)
    environment = json.loads((result.workdir / 'environment.json').read_text())
    assert environment['dataset']['image_shape'] == [32, 32, 3] and environment['dataset']['num_classes'] == 10
    assert result.summary['final_step'] == 2 * (100 // 32) and result.summary['test']['count'] == 100


def test_bfloat16_compute_trains_with_float32_parameters(tmp_path, make_config):
    result = fit(make_config(model__dtype='bfloat16', train__duration='2 epochs'), tmp_path / 'bf16', show_progress=False)
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(result.state.params))
    assert result.summary['test']['accuracy'] > 0.5  # it learns (chance is 0.1)
    # The forward pass computes in bfloat16: every convolution and dense layer's output (the logits are cast
    # back to float32 for the loss), and the logits differ from float32 compute on the same parameters.
    images = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype(np.float32)
    logits, state = result.state.apply_fn(result.state.variables, images, capture_intermediates=True,
                                          mutable=['intermediates'])
    layers = {'/'.join(path): value for path, value in jax.tree_util.tree_flatten_with_path(
        state['intermediates'])[0] for path in [[str(getattr(k, 'key', k)) for k in path]]}
    conv_and_dense = {p: v.dtype for p, v in layers.items() if '/Conv_' in p or '/Dense_' in p}
    assert conv_and_dense and set(conv_and_dense.values()) == {np.dtype(jnp.bfloat16)}, conv_and_dense
    assert logits.dtype == np.float32
    from jaxdl.models import build_model
    float32 = build_model(make_config(model__dtype='float32').model, 10)
    reference = float32.apply(result.state.variables, images)
    assert 1e-4 < float(np.max(np.abs(np.asarray(logits) - np.asarray(reference)))) < 0.5
