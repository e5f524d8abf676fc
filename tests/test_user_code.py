"""A researcher's own model, task and data through the same fit(), CLI, checkpoints and reruns, without editing
jaxdl: a flax model in a file outside the checkout, a Task class, a TFDS builder class, an image folder and numpy
arrays; and each kind of bad input as one clear error before any training step."""
import json

import numpy as np
import pytest
from PIL import Image

from jaxdl.config import ConfigError, apply_updates, load_config_file
from jaxdl.errors import DatasetNotAvailable
from jaxdl.logging import read_jsonl
from jaxdl.train.loop import fit
from conftest import ROOT, jaxdl

USER_MODELS = '''
import flax.linen as nn


class TinyNet(nn.Module):
    """A two-layer perceptron; its classifier is the layer named head."""
    num_outputs: int
    width: int = 16

    @nn.compact
    def __call__(self, images, *, train=False):
        x = nn.relu(nn.Dense(self.width)(images.reshape(images.shape[0], -1)))
        return nn.Dense(self.num_outputs, name='head')(x)


class TooWide(nn.Module):
    num_outputs: int

    @nn.compact
    def __call__(self, images, *, train=False):
        return nn.Dense(self.num_outputs + 3)(images.reshape(images.shape[0], -1))


class NotAModule:
    pass


def not_a_model(num_outputs):
    return 'a string'
'''

USER_EXPERIMENT = '''
from jaxdl.config import default_config


def get_config():
    config = default_config()
    config.dataset.mean = (0.5,)
    config.dataset.std = (0.5,)
    config.model.name = 'my_models:TinyNet'
    config.model.options.width = 64
    config.transfer.reinitialize = ('head',)
    config.optimizer.name = 'adam'
    config.optimizer.learning_rate = 0.003
    config.train.batch_size = 64
    config.train.duration = '3 epochs'
    return config
'''


@pytest.fixture(scope='module')
def user_code(tmp_path_factory):
    code = tmp_path_factory.mktemp('user_code')
    (code / 'my_models.py').write_text(USER_MODELS)
    (code / 'my_experiment.py').write_text(USER_EXPERIMENT)
    return code


@pytest.fixture(scope='module')
def user_run(user_code, tmp_path_factory):
    """`jaxdl train` of the user's experiment, run from a directory that is neither the checkout nor the code's."""
    elsewhere = tmp_path_factory.mktemp('elsewhere')
    result = jaxdl('train', user_code / 'my_experiment.py', '--workdir', elsewhere / 'run', '--no-progress',
                   cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    return elsewhere / 'run', json.loads(result.stdout[result.stdout.index('{'):])


@pytest.mark.slow
def test_a_user_model_outside_the_checkout_trains_and_its_run_is_used_from_anywhere(user_code, user_run, tmp_path,
                                                                                     capsys, monkeypatch):
    workdir, out = user_run
    assert out['test']['accuracy'] > 0.8 and out['test']['count'] == 359  # chance is 0.1
    environment = json.loads((workdir / 'environment.json').read_text())
    assert environment['code_paths'] == [str(user_code)]
    # evaluate in a fresh process, from another directory: the run says where my_models.py lives, and that code
    # is imported from there only when asked to
    refused = jaxdl('evaluate', workdir, cwd=tmp_path)
    assert refused.returncode == 2 and f'my_models (model.name \'my_models:TinyNet\') from {user_code}' in refused.stderr
    evaluated = jaxdl('evaluate', workdir, '--trust-code', cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads(evaluated.stdout)['accuracy'] == pytest.approx(out['test']['accuracy'])
    from jaxdl.cli import main
    monkeypatch.chdir(tmp_path)
    digit = tmp_path / 'digit.png'
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(digit)
    assert main(['predict', str(workdir), str(digit), '--json', '--trust-code']) == 0
    assert len(json.loads(capsys.readouterr().out)[0]['top']) == 3
    assert main(['rerun', str(workdir), '--workdir', str(tmp_path / 'again'), '--no-progress', '--trust-code']) == 0
    assert json.loads(capsys.readouterr().out)['match'] is True
    # fine-tuning starts from the user's run like from any run: everything but the classifier is loaded
    finetune = load_config_file(str(user_code / 'my_experiment.py'))
    apply_updates(finetune, {'transfer.init_from': str(workdir), 'train.duration': '1 epoch'})
    loaded = fit(finetune, tmp_path / 'finetuned', show_progress=False)
    transfer = json.loads((loaded.workdir / 'environment.json').read_text())['transfer']
    assert transfer['loaded'] == 2 and transfer['reinitialized'] == ['params/head/bias', 'params/head/kernel']
    # with its code gone, the run says which module is missing
    (user_code / 'my_models.py').rename(user_code / 'moved_away.py')
    try:
        missing = jaxdl('evaluate', workdir, '--trust-code', cwd=tmp_path)
    finally:
        (user_code / 'moved_away.py').rename(user_code / 'my_models.py')
    assert missing.returncode == 2 and "no module named 'my_models'" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and 'Traceback' not in missing.stderr


def shared_run(folder):
    """A run directory as someone might send it: config.json naming `shared_net:Net`, environment.json listing its
    own folder, and shared_net.py beside them, which leaves a mark when it runs; beside it a `safetensors.py` that
    would shadow the installed package."""
    from jaxdl.config import to_json
    folder.mkdir()
    config = apply_updates(load_config_file(str(ROOT / 'tests' / 'small_experiment.py')), {'model.name': 'shared_net:Net'})
    (folder / 'config.json').write_text(to_json(config))
    (folder / 'environment.json').write_text(json.dumps({'code_paths': [str(folder)], 'dataset': {
        'image_shape': [8, 8, 1], 'class_names': [str(i) for i in range(10)]}, 'plan': {'steps_per_epoch': 19}}))
    mark = "import pathlib; pathlib.Path(__file__).with_suffix('.ran').write_text('ran')\n"
    (folder / 'shared_net.py').write_text(mark + 'import safetensors\nNet = None\n')
    (folder / 'safetensors.py').write_text(mark)
    return folder


def test_a_run_directory_runs_no_code_it_carries_unless_trusted(tmp_path, capsys, monkeypatch):
    from jaxdl.cli import main
    run, here = shared_run(tmp_path / 'received'), tmp_path
    monkeypatch.chdir(here)
    for command in (['evaluate', run], ['predict', run, tmp_path / 'x.png'], ['rerun', run]):
        capsys.readouterr()
        code, refused = main([str(a) for a in command]), capsys.readouterr().err
        assert code == 2 and len(refused.strip().splitlines()) == 1, refused
        assert f"shared_net (model.name 'shared_net:Net') from {run}" in refused and '--trust-code' in refused
        assert not (run / 'shared_net.ran').exists()
    # trusted, in a process of its own: the run's code is imported
    trusted = jaxdl('evaluate', run, '--trust-code', cwd=here)
    assert (run / 'shared_net.ran').exists(), trusted.stderr[-2000:]  # it ran, and then failed as the model it is
    assert not (run / 'safetensors.ran').exists()  # the recorded folder comes after the installed packages


@pytest.mark.parametrize('name,options,message', [
    ('nowhere:Net', {}, r"'nowhere:Net' does not import: no module named 'nowhere'"),
    ('my_models:Missing', {}, r"module 'my_models' has no attribute 'Missing'"),
    ('my_models:NotAModule', {}, r'is the class NotAModule, not a flax.linen.Module'),
    ('my_models:not_a_model', {}, r'returned a str, not a flax.linen.Module'),
    ('my_models:TooWide', {}, r"outputs \(2, 13\) for a batch of 2; the task needs \[batch, 10\]"),
    ('my_models:TinyNet', {'widht': 8}, r"'widht' is not an option of 'my_models:TinyNet'; its options: width"),
])
def test_a_model_that_does_not_fit_is_one_clear_error_before_any_step(user_code, tmp_path, monkeypatch, name,
                                                                     options, message):
    monkeypatch.syspath_prepend(str(user_code))
    config = apply_updates(load_config_file(str(user_code / 'my_experiment.py')),
                           {'model.name': name, 'model.options': options})
    with pytest.raises(ConfigError, match=message):
        fit(config, tmp_path / 'run', show_progress=False)
    assert not (tmp_path / 'run' / 'checkpoints').exists() and not (tmp_path / 'run' / 'config.json').exists()


def test_a_user_task_trains_without_editing_jaxdl(make_config, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / 'tests' / 'user_code'))
    config = make_config(task__name='ordinal:OrdinalRegression', task__options={'margin_weight': 1.0},
                         train__duration='3 epochs', optimizer__name='adam', optimizer__learning_rate=0.003)
    result = fit(config, tmp_path / 'ordinal', show_progress=False)
    test = result.summary['test']
    assert set(test) == {'loss', 'mean_abs_rank_error', 'accuracy', 'count'} and test['count'] == 359
    assert test['mean_abs_rank_error'] < 1.0  # a constant guess of the middle rank is off by 2.5 on average
    records = read_jsonl(tmp_path / 'ordinal' / 'metrics.jsonl')
    assert all('mean_abs_rank_error' in r for r in records)
    environment = json.loads((tmp_path / 'ordinal' / 'environment.json').read_text())
    assert environment['code_paths'] == [str(ROOT / 'tests' / 'user_code')]
    with pytest.raises(ConfigError, match=r"'margin' is not an option of task 'ordinal:OrdinalRegression'"):
        fit(make_config(task__name='ordinal:OrdinalRegression', task__options={'margin': 1.0}), tmp_path / 'bad',
            show_progress=False)


def test_a_user_runner_by_import_path_trains_as_the_runner_it_wraps(make_config, tmp_path, monkeypatch):
    """A runner is one file: tests/user_code/accumulating_runner.py wraps the jit runner; named by train.parallel
    it runs every step of fit() and the run is the jit run's, figure for figure; an unknown name is refused."""
    monkeypatch.syspath_prepend(str(ROOT / 'tests' / 'user_code'))
    import accumulating_runner
    config = make_config(train__duration='40 steps', train__validate_every='20 steps')
    jit = fit(config, tmp_path / 'jit', show_progress=False)
    user = fit(apply_updates(config, {'train.parallel': 'accumulating_runner:RUNNER'}), tmp_path / 'user',
               show_progress=False)
    assert accumulating_runner.STEPS == [config.train.batch_size] * 40
    assert user.summary['test'] == jit.summary['test']
    environment = json.loads((tmp_path / 'user' / 'environment.json').read_text())
    assert environment['parallel'] == 'checked-jit' and environment['code_paths'] == [str(ROOT / 'tests' / 'user_code')]
    with pytest.raises(ConfigError, match=r"'train.parallel': unknown value 'jitt' \(did you mean 'jit'\?\)"):
        fit(apply_updates(config, {'train.parallel': 'jitt'}), tmp_path / 'bad', show_progress=False)


def test_a_user_tfds_builder_is_prepared_by_its_own_code_and_trains(make_config, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / 'tests' / 'user_code'))
    result = fit(make_config(dataset__name='blobs_builder:Blobs', dataset__mean=(0.2,), dataset__std=(0.3,),
                             train__batch_size=32, train__duration='4 epochs', optimizer__name='adam',
                             optimizer__learning_rate=0.003), tmp_path / 'blobs', show_progress=False)
    assert 'preparing blobs (by its own builder, once)' in capsys.readouterr().err
    assert result.summary['test']['count'] == 64 and result.summary['test']['accuracy'] > 0.6  # chance 0.25


# ------------------------------------------------------------------------------------------------ image folders


def write_folder(root, sizes=(12, 20, 31), per_class=8, split_layout=False):
    """Three classes told apart by brightness; PNG and JPEG, three sizes, every fourth image in colour."""
    rng = np.random.default_rng(0)
    splits = ('train', 'validation', 'test') if split_layout else ('',)
    for split in splits:
        for c, name in enumerate(('dark', 'mid', 'bright')):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                side = sizes[i % len(sizes)]
                grey = np.clip(rng.normal(40 + 90 * c, 10, (side, side)), 0, 255).astype(np.uint8)
                image = Image.fromarray(grey).convert('RGB') if i % 4 == 3 else Image.fromarray(grey)
                image.save(folder / f'{i}.{"jpg" if i % 2 else "png"}')
    return root


@pytest.mark.parametrize('split_layout', [pytest.param(False, id='one-folder-split-by-fractions'),
                                          pytest.param(True, id='split-subfolders', marks=pytest.mark.slow)])
def test_an_image_folder_trains_through_the_same_pipeline(make_config, tmp_path, split_layout, capsys):
    root = write_folder(tmp_path / 'images', split_layout=split_layout)
    config = make_config(dataset__name=f'folder:{root}', dataset__image_size=16,
                         dataset__split_fractions=(0.5, 0.25, 0.25), dataset__mean=(0.5,), dataset__std=(0.25,),
                         train__batch_size=4, train__eval_batch_size=5, train__duration='12 steps')
    result = fit(config, tmp_path / 'run', show_progress=False)
    assert 'preparing folder:' in capsys.readouterr().err
    environment = json.loads((tmp_path / 'run' / 'environment.json').read_text())
    assert environment['dataset']['class_names'] == ['bright', 'dark', 'mid']
    assert environment['dataset']['image_shape'] == [16, 16, 3]  # one colour image makes every image RGB
    sizes = environment['dataset']['sizes']
    assert sizes == ({'train': 24, 'validation': 24, 'test': 24} if split_layout else
                     {'train': 12, 'validation': 6, 'test': 6})  # 8 a class: 4 / 2 / 2 each
    assert result.summary['test']['count'] == sizes['test'] and np.isfinite(result.summary['test']['loss'])
    # The second run reads the prepared copy; a changed folder is prepared again, never read stale.
    fit(config, tmp_path / 'again', show_progress=False)
    assert 'preparing folder:' not in capsys.readouterr().err
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(next(root.rglob('dark')) / 'new.png')
    fit(config, tmp_path / 'changed', show_progress=False)
    assert 'preparing folder:' in capsys.readouterr().err


def test_a_bad_image_folder_is_one_clear_error_naming_the_problem(make_config, tmp_path):
    def error_of(root, **updates):
        config = make_config(dataset__name=f'folder:{root}', dataset__image_size=16, **updates)
        with pytest.raises((DatasetNotAvailable, ConfigError)) as error:
            fit(config, tmp_path / 'run', show_progress=False)
        return str(error.value)
    flat = tmp_path / 'flat'
    flat.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(flat / 'a.png')
    assert 'has no class subfolders' in error_of(flat)
    empty = write_folder(tmp_path / 'empty')
    (empty / 'nothing').mkdir()
    assert f'the class folder {empty / "nothing"} has no PNG or JPEG images' in error_of(empty)
    broken = write_folder(tmp_path / 'broken')
    (broken / 'mid' / 'cut.png').write_bytes((broken / 'mid' / '0.png').read_bytes()[:40])
    assert f'cannot read the image {broken / "mid" / "cut.png"}' in error_of(broken)
    assert 'is not a directory' in error_of(tmp_path / 'nowhere')
    with pytest.raises(ConfigError, match=r"dataset\.split_fractions.*summing to 1"):
        from jaxdl.config import validate
        validate(make_config(dataset__split_fractions=(0.5, 0.2, 0.2)))
    assert not (tmp_path / 'run' / 'checkpoints').exists()


# ------------------------------------------------------------------------------------------------ numpy arrays


def test_numpy_arrays_are_stored_once_and_train_through_the_same_path(make_config, tmp_path, capsys):
    from sklearn.datasets import load_digits
    from jaxdl.data import from_arrays
    from jaxdl.runs import evaluate_run
    digits = load_digits()
    images = np.round(digits.images * 255 / 16).astype(np.uint8)
    labels = digits.target
    splits = {'train': (images[:1200], labels[:1200]), 'validation': (images[1200:1500], labels[1200:1500]),
              'test': (images[1500:], labels[1500:])}
    name = from_arrays('my_digits', splits, class_names=[str(d) for d in range(10)])
    assert from_arrays('my_digits', splits, class_names=[str(d) for d in range(10)]) == name  # stored once
    assert capsys.readouterr().err.count('storing arrays') == 1
    result = fit(make_config(dataset__name=name, train__duration='3 epochs'), tmp_path / 'arrays', show_progress=False)
    assert result.summary['test']['count'] == 297 and result.summary['test']['accuracy'] > 0.7  # chance 0.1
    assert evaluate_run(tmp_path / 'arrays', 'validation')['count'] == 300
    other = from_arrays('my_digits', {**splits, 'test': (images[1500:1510], labels[1500:1510])})
    assert other != name  # other arrays, another stored dataset under the same name
    with pytest.raises(DatasetNotAvailable, match='must be uint8 pixels .* or float32'):
        from_arrays('bad', {'train': (images.astype(np.float64), labels)})
    with pytest.raises(DatasetNotAvailable, match='give every split the same image shape and dtype'):
        from_arrays('bad', {'train': (images, labels), 'test': (images.astype(np.float32), labels)})
    with pytest.raises(DatasetNotAvailable, match='has 1797 images but 5 label values'):
        from_arrays('bad', {'train': (images, labels[:5])})


def test_a_user_model_without_axis_name_runs_under_a_mapped_axis(user_code, monkeypatch):
    """jaxdl passes `axis_name` (for BatchNorm over the global batch) only to a model whose __call__ takes it:
    the user's TinyNet does not, and still trains under pmap, as under jit."""
    import jax
    from jaxdl.models import ModelApply, build_model
    from jaxdl.tasks import build_task
    from jaxdl.train.state import create_train_state
    from jaxdl.train.runners import make_runner
    import optax
    monkeypatch.syspath_prepend(str(user_code))
    config = load_config_file(str(user_code / 'my_experiment.py'))
    task = build_task(config.task, 10)
    model = build_model(config.model, 10, task.head_options)
    assert not ModelApply(model).takes_axis_name
    batch = {'image': np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype(np.float32),
             'label': np.arange(8, dtype=np.int32), 'valid': np.ones(8, bool)}
    results = {}
    for kind in ('jit', 'pmap'):
        runner = make_runner(kind, task)
        state = runner.place_state(create_train_state(model, optax.sgd(0.1), seed=0, image_shape=(8, 8, 1)))
        state, _ = runner.train(state, batch)
        results[kind] = jax.device_get(runner.host_state(state).params)
    for a, b in zip(jax.tree.leaves(results['jit']), jax.tree.leaves(results['pmap'])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
