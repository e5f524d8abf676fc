"""The `jaxdl` command as a user runs it, in subprocesses."""
import json
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from conftest import ROOT, jaxdl, run

EXPERIMENT = ROOT / 'tests' / 'small_experiment.py'


def test_help_and_datasets_answer_without_the_heavy_libraries():
    assert jaxdl('--help').returncode == 0
    listing = jaxdl('datasets')
    assert listing.returncode == 0 and 'digits' in listing.stdout and 'mnist' in listing.stdout
    listing = jaxdl('experiments')  # the built-in experiments, each named with its docstring's first paragraph
    assert listing.returncode == 0 and '  digits_cnn  ' in listing.stdout and 'small CNN' in listing.stdout
    # What makes them answer in about a second: none of the three imports TensorFlow, TFDS, jax or flax.
    probe = run([sys.executable, '-c', (
        'import contextlib, io, sys\n'
        'from jaxdl.cli import main\n'
        "for argv in (['--help'], ['datasets'], ['experiments']):\n"
        '    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n'
        '        main(argv)\n'
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'tensorflow_datasets', 'jax', 'flax'}))")])
    assert probe.returncode == 0 and probe.stdout.strip() == '[]', probe.stdout + probe.stderr[-2000:]


def test_unknown_key_is_named_with_close_matches(tmp_path):
    result = jaxdl('train', EXPERIMENT, '--workdir', tmp_path / 'x', '--config.train.batchsize=3')
    assert result.returncode == 2
    assert "unknown config key 'train.batchsize'" in result.stderr and "'train.batch_size'" in result.stderr
    assert 'Traceback' not in result.stderr and not (tmp_path / 'x').exists()


def test_unavailable_dataset_fails_at_once_without_the_network(tmp_path):
    # A socket connection ends this process at once with status 99: a download attempt (or a wait on one) cannot
    # hide behind the one-line instruction.
    script = ('import os, runpy, socket, sys\n'
              'def refuse(*args): os._exit(99)\n'  # no exception a library could catch and turn into another
              'socket.socket.connect = socket.socket.connect_ex = refuse\n'
              "sys.argv = ['jaxdl', *sys.argv[1:]]\n"
              "runpy.run_module('jaxdl', run_name='__main__')\n")
    result = run([sys.executable, '-c', script, 'train', str(EXPERIMENT), '--workdir', str(tmp_path / 'x'),
                  '--config.dataset.name=cifar10', f'--config.dataset.data_dir={tmp_path}'])
    assert result.returncode == 2 and f'is not prepared in {tmp_path} ' in result.stderr, result.stderr[-3000:]
    assert 'run `jaxdl prepare cifar10 --data-dir DIR`' in result.stderr and 'Traceback' not in result.stderr
    assert not (tmp_path / 'x').exists() or not any((tmp_path / 'x').iterdir())  # nothing trained, nothing written


@pytest.mark.slow  # .ci/wheel-check trains digits_cnn by name from the installed wheel
def test_a_built_in_experiment_trains_by_name_through_the_cli(tmp_path):
    result = jaxdl('train', 'digits_vit', '--workdir', tmp_path / 'vit', '--no-progress',
                   '--config.train.duration=4 steps', '--config.train.validate_every=2 steps')
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / 'vit' / 'summary.json').read_text())
    assert summary['final_step'] == 4 and summary['test']['count'] == 359
    config = json.loads((tmp_path / 'vit' / 'config.json').read_text())
    assert config['model']['name'] == 'vit' and config['model']['options']['patch'] == 2


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp('cli') / 'run'
    result = jaxdl('train', EXPERIMENT, '--workdir', workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, {**json.loads(result.stdout), 'stderr': result.stderr}


def test_train_prints_a_table_row_per_validation(trained):
    workdir, out = trained
    assert out['stop_reason'] == 'completed' and out['test']['count'] == 359
    rows = [line for line in out['stderr'].splitlines() if line.strip().startswith(('1 |', '2 |'))]
    assert len(rows) == 2 and all(len(r.split('|')) == 8 for r in rows)  # epoch .. learning rate
    assert 'val loss' in out['stderr'] and 'learn rate' in out['stderr']
    # stderr is no terminal here (a CI log): progress is a line every 5% of the run, never a redrawn bar
    progress = [line for line in out['stderr'].splitlines() if line.startswith('step ')]
    assert len(progress) == 19 and progress[-1].startswith('step 38/38 (100%)') and '\r' not in out['stderr']
    summary = json.loads((workdir / 'summary.json').read_text())
    assert summary['test']['accuracy'] == out['test']['accuracy']


def cli(capsys, *args) -> tuple[int, str, str]:
    """The same `main` in this process: each subprocess costs seconds (the module's fixture trains through a real
    one, and test_rerun runs one)."""
    from jaxdl.cli import main
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_prints_json_metrics_for_any_split(trained, capsys):
    workdir, out = trained
    code, stdout, _ = cli(capsys, 'evaluate', workdir)
    metrics = json.loads(stdout)
    assert code == 0
    assert metrics['split'] == 'test' and metrics['count'] == 359
    assert metrics['accuracy'] == pytest.approx(out['test']['accuracy'])
    code, stdout, _ = cli(capsys, 'evaluate', workdir, '--split', 'validation', '--checkpoint', 'latest')
    validation = json.loads(stdout)
    assert code == 0 and validation['count'] == 180 and validation['step'] == 38
    code, _, stderr = cli(capsys, 'evaluate', workdir, '--checkpoint', '7')
    assert code == 2 and 'no checkpoint at step 7' in stderr


def test_predict_gives_top_classes_and_converts_or_refuses_images(trained, tmp_path, capsys):
    workdir, _ = trained
    example = next(iter(tfds.as_numpy(tfds.builder('digits').as_dataset(split='test'))))
    gray = tmp_path / 'digit.png'
    Image.fromarray(example['image'][..., 0]).save(gray)
    rgb = tmp_path / 'digit_rgb_big.jpg'
    Image.fromarray(example['image'][..., 0]).convert('RGB').resize((32, 32), Image.NEAREST).save(rgb)
    code, stdout, stderr = cli(capsys, 'predict', workdir, gray, rgb, '--json', '--top', '3')
    assert code == 0, stderr[-2000:]
    predictions = json.loads(stdout)
    assert [len(p['top']) for p in predictions] == [3, 3]
    probabilities = [t['probability'] for t in predictions[0]['top']]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
    assert 'converted RGB to L' in stderr and 'resized 32x32' in stderr
    wide = tmp_path / 'wide.png'
    Image.fromarray(np.zeros((8, 40), np.uint8)).save(wide)
    code, _, stderr = cli(capsys, 'predict', workdir, wide)
    assert code == 2 and 'aspect ratio' in stderr
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'not an image')
    code, _, stderr = cli(capsys, 'predict', workdir, broken)
    assert code == 2 and 'not a readable PNG or JPEG' in stderr


def test_rerun_reproduces_the_recorded_metrics(trained, tmp_path):
    workdir, _ = trained
    result = jaxdl('rerun', workdir, '--workdir', tmp_path / 'again', '--no-progress')
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)['match'] is True
    assert 'match the recorded run' in result.stderr


def test_the_version_has_one_source_and_the_accelerator_extras_are_jaxs_own(capsys):
    import importlib.metadata
    import tomllib

    import jaxdl
    from jaxdl.cli import main
    with pytest.raises(SystemExit):
        main(['--version'])
    assert capsys.readouterr().out.strip() == f'jaxdl {jaxdl.__version__}'
    assert importlib.metadata.version('jaxdl') == jaxdl.__version__
    project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
    assert 'version' not in project and project['dynamic'] == ['version']
    jax_extras = {r.split('extra == ')[1].strip('"') for r in importlib.metadata.requires('jax') if 'extra ==' in r}
    for extra in ('cuda12', 'cuda13', 'tpu'):
        [requirement] = project['optional-dependencies'][extra]
        assert requirement.startswith(f'jax[{extra}]') and extra in jax_extras
