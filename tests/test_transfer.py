"""Transfer learning: parameter groups and frozen parameters, frozen BatchNorm, loading a backbone from another
run with loud mismatches, few-shot class subsets, and the fine-tune-versus-scratch comparison."""
import json
import shutil
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdl
from jaxdl.config import ConfigError, Plan, apply_updates, default_config
from jaxdl.data.pipeline import Pipeline
from jaxdl.errors import TransferError
from jaxdl.runs import load_run
from jaxdl.models import build_model
from jaxdl.optim import build_optimizer
from jaxdl.tasks import build_task
from jaxdl.train.loop import fit
from jaxdl.transfer import transfer_variables


def small(**updates):
    config = apply_updates(default_config(), {
        'dataset.mean': (0.5,), 'dataset.std': (0.5,), 'model.options.features': (8, 16), 'model.options.dense': 32,
        'optimizer.learning_rate': 0.05, 'train.batch_size': 25, 'train.eval_batch_size': 128,
        'train.log_every': '5 steps'})
    return apply_updates(config, {k.replace('__', '.'): v for k, v in updates.items()})


def steps_of(config, steps=3, seed=0):
    """(initial state, state after `steps` train steps on random batches) for `config`'s model and optimizer."""
    task = build_task(config.task, 10)
    tx, _ = build_optimizer(config.optimizer, Plan.resolve(config, 10))
    state = jaxdl.create_train_state(build_model(config.model, 10), tx, seed=seed, image_shape=(8, 8, 1))
    step = jax.jit(lambda s, b: jaxdl.train_step(s, b, task=task))
    rng = np.random.default_rng(seed)
    new = state
    for _ in range(steps):
        batch = {'image': rng.normal(size=(16, 8, 8, 1)).astype(np.float32),
                 'label': rng.integers(0, 10, 16).astype(np.int32), 'valid': np.ones(16, bool)}
        new, _ = step(new, batch)
    return state, new


def test_frozen_group_stays_bit_identical_and_multipliers_scale_the_update():
    frozen_before, frozen_after = steps_of(small(optimizer__groups=(('backbone', 0.0),)))
    for a, b in zip(jax.tree.leaves(frozen_before.params['backbone']), jax.tree.leaves(frozen_after.params['backbone'])):
        assert np.array_equal(a, b)
    assert not np.array_equal(frozen_before.params['head']['Dense_0']['kernel'],
                              frozen_after.params['head']['Dense_0']['kernel'])
    # Plain SGD, one step: a 0.1 group moves exactly a tenth of what it moves at the full rate.
    plain = dict(optimizer__momentum=0.0)
    full_before, full_after = steps_of(small(**plain), steps=1)
    tenth_before, tenth_after = steps_of(small(optimizer__groups=(('backbone/Conv_0', 0.1),), **plain), steps=1)
    delta = lambda a, b, *path: np.asarray(b.params['backbone'][path[0]][path[1]] - a.params['backbone'][path[0]][path[1]])
    np.testing.assert_allclose(delta(tenth_before, tenth_after, 'Conv_0', 'kernel'),
                               0.1 * delta(full_before, full_after, 'Conv_0', 'kernel'), rtol=1e-3, atol=1e-7)  # float32 cancellation in b - a
    np.testing.assert_allclose(delta(tenth_before, tenth_after, 'Conv_1', 'kernel'),
                               delta(full_before, full_after, 'Conv_1', 'kernel'), rtol=1e-3, atol=1e-7)


def test_a_group_pattern_that_selects_nothing_is_an_error():
    with pytest.raises(ConfigError, match=r"\['backbon'\] match no parameter"):
        steps_of(small(optimizer__groups=(('backbon', 0.1),)), steps=0)
    with pytest.raises(ConfigError, match=r'optimizer\.groups\[0\]'):
        jaxdl.config.validate(small(optimizer__groups=(('backbone', -1.0),)))


def test_frozen_batch_norm_keeps_its_statistics():
    resnet = dict(model__name='resnet', model__options={'depth': 10, 'width': 8, 'stem': 'small'})
    before, after = steps_of(small(**resnet, model__freeze_batch_norm=True), steps=2)
    for a, b in zip(jax.tree.leaves(before.model_state), jax.tree.leaves(after.model_state)):
        assert np.array_equal(a, b)
    before, after = steps_of(small(**resnet), steps=2)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before.model_state),
                                                        jax.tree.leaves(after.model_state)))
    with pytest.raises(ConfigError, match="model.freeze_batch_norm': model 'cnn' takes no freeze_batch_norm"):
        steps_of(small(model__freeze_batch_norm=True), steps=0)


def test_mismatches_are_named_with_paths_and_shapes():
    new = {'params': {'backbone': {'w': np.zeros((3, 4)), 'b': np.zeros(4)}, 'head': {'k': np.zeros((4, 2))}},
           'model_state': {}}
    source = {'params': {'backbone': {'w': np.ones((3, 5)), 'extra': np.ones(2)}, 'head': {'k': np.ones((4, 7))}},
              'model_state': {}}
    with pytest.raises(TransferError) as error:
        transfer_variables(new, source, ('head',))
    message = str(error.value)
    assert 'params/backbone/w: the new model has (3, 4), the source (3, 5)' in message
    assert 'params/backbone/b (4,): not in the source' in message
    assert 'params/backbone/extra (2,): in the source, not in the new model' in message
    assert 'head' not in message  # listed as re-initialised: its shape may differ
    source['params']['backbone'] = {'w': np.ones((3, 4)), 'b': np.full(4, 2.0)}
    tree, report = transfer_variables(new, source, ('head',))
    assert np.all(tree['params']['backbone']['b'] == 2.0) and np.all(tree['params']['head']['k'] == 0.0)
    assert report.reinitialized == ['params/head/k'] and len(report.loaded) == 2


def test_a_vit_position_embedding_is_resized_for_another_image_size():
    from jaxdl.models.vit import resize_position_embedding
    tiny = {'size': 'tiny', 'patch': 2, 'width': 16, 'depth': 1, 'heads': 2, 'mlp': 32}

    def variables(image_size, pool='cls'):
        config = apply_updates(default_config(), {'model.name': 'vit', 'model.options': {**tiny, 'pool': pool}})
        return build_model(config.model, 10).init(jax.random.key(0), jnp.zeros((1, image_size, image_size, 1)))

    source, new = variables(8), variables(16)  # 1 + 4x4 tokens, then 1 + 8x8
    tree, report = transfer_variables(new, source, ('head',))
    assert report.resized == ['params/backbone/position_embedding']
    moved = np.asarray(tree['params']['backbone']['position_embedding'])
    old = np.asarray(source['params']['backbone']['position_embedding'])
    assert moved.shape == (1, 65, 16)
    np.testing.assert_array_equal(moved[0, 0], old[0, 0])  # the class token's row is no grid position
    # A smooth grid stays the same function of the position: its mean survives the resize.
    grid = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)[..., None] * np.ones(16, np.float32)
    smooth = resize_position_embedding(np.concatenate([old[:, :1], grid.reshape(1, 16, 16)], axis=1), 65)
    np.testing.assert_allclose(smooth[0, 1:].reshape(8, 8, 16).mean(), grid.mean(), atol=0.02)
    row = smooth[0, 1:].reshape(8, 8, 16)[3, :, 0]  # interpolated, not repeated: 8 increasing values from 4
    assert np.all(np.diff(row) > 0)
    np.testing.assert_array_equal(resize_position_embedding(old, 17), old)  # the same size: unchanged
    assert resize_position_embedding(variables(8, 'gap')['params']['backbone']['position_embedding'],
                                     64).shape == (1, 64, 16)  # no class token: the whole embedding is the grid
    assert 'resized to the new shape: params/backbone/position_embedding' in report.describe()
    # What no resize can fit is still a mismatch: another width.
    other = apply_updates(default_config(), {'model.name': 'vit', 'model.options': {**tiny, 'width': 8,
                                                                                     'heads': 1}})
    wider = build_model(other.model, 10).init(jax.random.key(0), jnp.zeros((1, 16, 16, 1)))
    with pytest.raises(TransferError, match='position_embedding: the new model has \\(1, 65, 8\\), the source'):
        transfer_variables(wider, source, ('head',))


def test_class_selection_and_few_shot_subset():
    config = small(dataset__classes=(5, 6, 7, 8, 9), dataset__train_examples_per_class=3)
    pipeline = Pipeline.for_config(config)
    assert pipeline.spec.num_classes == 5 and pipeline.spec.class_names == ('5', '6', '7', '8', '9')
    assert pipeline.size('train') == 15
    batch = next(pipeline.train_batches(seed=0, global_batch=15))
    assert Counter(batch['label'].tolist()) == {0: 3, 1: 3, 2: 3, 3: 3, 4: 3}
    labels = np.concatenate([b['label'][b['valid']] for b in pipeline.eval_batches('validation', 64)])
    assert set(labels) == {0, 1, 2, 3, 4} and pipeline.size('validation') == len(labels) > 15


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory, data_dir):
    workdir = tmp_path_factory.mktemp('transfer') / 'pretrained'
    fit(small(dataset__classes=(0, 1, 2, 3, 4), train__duration='2 epochs'), workdir, show_progress=False)
    return workdir


def finetune(source, **updates):
    return small(**{'dataset__classes': (5, 6, 7, 8, 9), 'dataset__train_examples_per_class': 10,
                     'train__duration': '4 epochs', 'transfer__init_from': str(source),
                     'optimizer__groups': (('backbone', 0.1),), **updates})


def test_fine_tuning_loads_the_backbone_and_compares_with_scratch(pretrained, tmp_path):
    workdir = tmp_path / 'finetuned'
    result = fit(finetune(pretrained, transfer__compare_with_scratch=True), workdir, show_progress=False)
    environment = json.loads((workdir / 'environment.json').read_text())
    source = load_run(pretrained, 'best')
    assert environment['transfer']['source'] == str(pretrained) and environment['transfer']['step'] == source.step
    assert environment['transfer']['reinitialized'] == ['params/head/Dense_0/bias', 'params/head/Dense_0/kernel']
    # Step 0 of the fine-tuning run is the source's backbone with a fresh head.
    first = load_run(workdir, 'latest').config  # the recorded config names the source by absolute path
    assert first.transfer.init_from == str(pretrained)
    comparison = json.loads((workdir / 'summary.json').read_text())['comparison']
    assert comparison == result.summary['comparison']
    assert set(comparison) >= {'fine_tuned', 'from_scratch'}
    assert comparison['fine_tuned']['accuracy'] == result.summary['test']['accuracy']
    scratch = json.loads((workdir / 'from_scratch' / 'summary.json').read_text())
    assert comparison['from_scratch']['accuracy'] == scratch['test']['accuracy']
    scratch_config = json.loads((workdir / 'from_scratch' / 'config.json').read_text())
    assert scratch_config['transfer']['init_from'] == '' and scratch_config['optimizer']['groups'] == []
    assert scratch_config['train'] == json.loads((workdir / 'config.json').read_text())['train']  # same budget


def test_the_initial_state_is_the_sources_backbone(pretrained):
    from jaxdl.train.state import state_from_config
    from jaxdl.transfer import initialize_from
    config = finetune(pretrained)
    from jaxdl.tasks import build_task
    state, _ = state_from_config(config, build_task(config.task, 5), image_shape=(8, 8, 1), plan=Plan.resolve(config, 2))
    loaded, _ = initialize_from(state, config.transfer, config.model)
    source = load_run(pretrained, 'best').state
    for a, b in zip(jax.tree.leaves(loaded.params['backbone']), jax.tree.leaves(source.params['backbone'])):
        assert np.array_equal(a, b)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(loaded.params['head']),
                                                    jax.tree.leaves(state.params['head'])))


def test_bad_sources_fail_before_any_training_step(pretrained, tmp_path):
    cases = {'missing': (finetune(tmp_path / 'nowhere'), 'does not exist'),
             'empty': (finetune(tmp_path), 'holds no checkpoint'),
             'wider backbone': (finetune(pretrained, model__options__features=(8, 32)),
                                r'params/backbone/Conv_2/kernel: the new model has \(3, 3, 8, 32\), the source '
                                r'\(3, 3, 8, 16\)')}
    for name, (config, message) in cases.items():
        workdir = tmp_path / name.replace(' ', '_')
        with pytest.raises(TransferError, match=message):
            fit(config, workdir, show_progress=False)
        assert not (workdir / 'checkpoints').exists() or not any((workdir / 'checkpoints').iterdir()), name
        assert not (workdir / 'metrics.jsonl').exists(), name


def test_rerun_finds_the_source_or_says_it_is_gone(pretrained, tmp_path, capsys):
    from jaxdl.cli import main
    source = tmp_path / 'source'
    shutil.copytree(pretrained, source)
    workdir = tmp_path / 'finetuned'
    fit(finetune(source, train__duration='1 epoch'), workdir, show_progress=False)
    assert main(['rerun', str(workdir), '--no-progress']) == 0  # the recorded source, found again
    assert '"match": true' in capsys.readouterr().out
    shutil.rmtree(source)
    assert main(['rerun', str(workdir), '--workdir', str(tmp_path / 'rerun2'), '--no-progress']) == 2
    assert f'{source} does not exist' in capsys.readouterr().err


def test_init_from_a_file_that_is_not_weights_is_one_line_naming_what_it_takes_before_any_step(tmp_path, capsys):
    from conftest import ROOT
    from jaxdl.cli import main
    notes = tmp_path / 'hostname'
    notes.write_text('a file that is neither a run, a checkpoint nor weights\n')
    code = main(['train', str(ROOT / 'tests' / 'small_experiment.py'), '--workdir', str(tmp_path / 'run'),
                 '--no-progress', f'--config.transfer.init_from={notes}'])
    errors = [line for line in capsys.readouterr().err.splitlines() if 'error' in line.lower()]
    assert code == 2 and len(errors) == 1, errors
    assert f'jaxdl train: error: transfer.init_from: {notes} is a file that is not a weights file' in errors[0]
    assert "a trained run's workdir" in errors[0] and '(.safetensors or .pth)' in errors[0]
    assert not (tmp_path / 'run' / 'metrics.jsonl').exists()
