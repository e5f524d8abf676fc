"""`jaxdl export`: for every task and every format, the exported model, loaded by its own runtime (jax alone,
TensorFlow, onnxruntime), gives `jaxdl predict`'s outputs for the same uint8 images, batch 1 and 7; StableHLO
loads where jaxdl and Flax cannot be imported; bad requests fail in one line and write nothing."""
import json
import sys

import jax
import numpy as np
import pytest

from jaxdl import cli
from jaxdl.config import apply_updates, load_config_file
from jaxdl.data.memory import open_split
from jaxdl.data.model_input import ImageFormat, model_input
from jaxdl.data.pipeline import Pipeline
from jaxdl.data import preprocess
from jaxdl.errors import ConfigError, InputError, MissingExtra
from jaxdl.export import FORMATS, export
from jaxdl.runs import load_run, predict_images
from jaxdl.train.loop import fit
from conftest import ROOT, run
from test_dense_tasks import dense_run_config
from test_regression import regression_config

TASKS = ('classification', 'regression', 'segmentation', 'detection')
# jax 0.12 serializes a dynamic batch's shape checks in a form TensorFlow 2.21 (the newest here) cannot read; the
# export then says to export a fixed batch. A TensorFlow that reads them turns this test red: update the line.
SAVEDMODEL_DYNAMIC_BATCH = jax.__version_info__ < (0, 12)
MIN_SCORE = 0.05  # detection: the boxes compared are those a client keeps (jaxdl predict's --min-score, lowered
#                   for a model trained a few steps)


def task_config(task: str):
    if task == 'classification':  # with the centre crop of ImageNet-style evaluation: crop and resize inside
        config = load_config_file(str(ROOT / 'tests' / 'small_experiment.py'))
        return apply_updates(config, {'train.duration': '6 steps', 'dataset.center_crop': 0.875,
                                       'dataset.image_size': 8, 'optimizer.ema_decay': 0.9})
    if task == 'regression':
        return regression_config(train__duration='6 steps', train__validate_every='6 steps')
    return apply_updates(dense_run_config(task), {'train.duration': '12 steps', 'optimizer.learning_rate': 0.01})


class TrainedRuns(dict):
    """Each task's run, trained a few steps when a test first asks for it (the outputs, not their quality, are
    compared), and 7 of its validation images as a client has them: uint8 at the model's input size."""

    def __init__(self, root):
        super().__init__()
        self.root = root

    def __missing__(self, task):
        config = task_config(task)
        workdir = fit(config, self.root / task, show_progress=False).workdir
        pipeline = Pipeline.for_config(config)
        images = np.stack([ex['image'] for ex in open_split(pipeline.builder, 'validation').take(7).as_numpy_iterator()])
        self[task] = (load_run(workdir), images)
        return self[task]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    return TrainedRuns(tmp_path_factory.mktemp('export'))


# The quick suite exports classification in every format (a centre crop and an EMA, so the fullest preprocessing);
# the slow marker adds the other tasks' outputs through each converter.
QUICK = {('classification', fmt) for fmt in FORMATS}


def load(fmt: str, path):
    """The exported model as a function of uint8 images -> {output name: numpy array}, by its own runtime."""
    names = json.loads((path / 'metadata.json').read_text())['outputs']
    if fmt == 'stablehlo':
        exported = jax.export.deserialize((path / 'model.stablehlo').read_bytes())
        return lambda images: {k: np.asarray(v) for k, v in exported.call(images).items()}
    if fmt == 'savedmodel':
        import tensorflow as tf
        serve = tf.saved_model.load(str(path / 'saved_model')).signatures['serving_default']
        return lambda images: {k: v.numpy() for k, v in serve(images=tf.constant(images)).items()}
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path / 'model.onnx'), providers=['CPUExecutionProvider'])
    return lambda images: dict(zip(names, session.run(None, {'images': images})))


def expected_outputs(run_, images) -> dict:
    outputs = predict_images(run_, images)
    return dict(outputs) if isinstance(outputs, dict) else {run_.task.prediction_name: outputs}


def assert_same_outputs(got: dict, expected: dict, task: str):
    assert set(got) == set(expected)
    if task == 'detection':  # the boxes a client keeps: those at or above the score threshold
        kept = expected['scores'] >= MIN_SCORE
        assert kept.any() and not kept.all()
        np.testing.assert_array_equal(got['scores'] >= MIN_SCORE, kept)
        for name in ('boxes', 'scores', 'classes'):
            np.testing.assert_allclose(got[name][kept], expected[name][kept], rtol=1e-5, atol=1e-5, err_msg=name)
        return
    for name, value in expected.items():
        assert got[name].shape == value.shape and got[name].dtype == value.dtype, name
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize('task, fmt', [
    pytest.param(task, fmt, id=f'{task}-{fmt}', marks=() if (task, fmt) in QUICK else pytest.mark.slow)
    for task in TASKS for fmt in FORMATS])
def test_the_exported_model_gives_what_predict_gives_at_batch_1_and_7(trained, task, fmt, tmp_path, capfd):
    run_, images = trained[task]
    output = tmp_path / fmt
    capfd.readouterr()
    if fmt == 'savedmodel' and not SAVEDMODEL_DYNAMIC_BATCH:
        with pytest.raises(ConfigError, match='cannot read the shape checks.*--batch N'):
            export(run_.workdir, fmt, output)
        assert not output.exists()
        for n in (1, 7):  # what the message says to do
            export(run_.workdir, fmt, output, batch=n, force=True)
            assert_same_outputs(load(fmt, output)(images[:n]), expected_outputs(run_, images[:n]), task)
        return
    metadata = export(run_.workdir, fmt, output)
    assert not capfd.readouterr().out  # a converter's own debugging lines are not the user's output
    assert metadata['input']['shape'] == [None, *run_.image_shape] and metadata['input']['dtype'] == 'uint8'
    model = load(fmt, output)
    for n in (1, 7):
        assert_same_outputs(model(images[:n]), expected_outputs(run_, images[:n]), task)


def test_the_model_input_is_the_pipelines_preprocessing(trained):
    run_, images = trained['classification']
    image_format = ImageFormat.of(run_.config.dataset)
    assert image_format.center_crop and not image_format.antialias  # a crop, then a resize back up
    tf_floats = np.stack([preprocess.image_to_float(image, image_format).numpy() for image in images])
    np.testing.assert_allclose(np.asarray(model_input(images, image_format)), tf_floats, rtol=1e-6, atol=1e-6)


def test_a_stablehlo_export_runs_with_jax_alone_and_a_fixed_batch_takes_only_its_size(trained, tmp_path, capsys):
    run_, images = trained['classification']
    output = tmp_path / 'fixed'
    assert cli.main(['export', str(run_.workdir), '--format', 'stablehlo', '--output', str(output),
                     '--batch', '7', '--checkpoint', 'latest']) == 0
    said = capsys.readouterr().out
    assert 'model.stablehlo and metadata.json' in said and f'uint8 [7, {", ".join(map(str, run_.image_shape))}]' in said
    metadata = json.loads((output / 'metadata.json').read_text())
    assert metadata['input']['shape'] == [7, *run_.image_shape]
    assert metadata['run']['checkpoint_step'] == 6 and len(metadata['run']['config_sha256']) == 64
    assert metadata['class_names'] == run_.class_names and metadata['outputs'] == ['probabilities']
    assert set(metadata['versions']) == {'jaxdl', 'jax'}
    np.save(tmp_path / 'images.npy', images)
    script = (
        "import sys, json; sys.modules['jaxdl'] = sys.modules['flax'] = None\n"  # importing either now fails
        "import jax, numpy as np\n"
        f"exported = jax.export.deserialize(open({str(output / 'model.stablehlo')!r}, 'rb').read())\n"
        f"images = np.load({str(tmp_path / 'images.npy')!r})\n"
        "outputs = exported.call(images)\n"
        "print(json.dumps({k: np.asarray(v).tolist() for k, v in outputs.items()}))\n"
        "try:\n    exported.call(images[:1])\nexcept Exception as e:\n    print(type(e).__name__)\n"
    )
    result = run([sys.executable, '-c', script], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    got = {k: np.asarray(v) for k, v in json.loads(lines[0]).items()}
    latest = load_run(run_.workdir, 'latest')
    expected = expected_outputs(latest, images)
    np.testing.assert_allclose(got['probabilities'], expected['probabilities'], rtol=1e-5, atol=1e-5)
    assert lines[1] == 'ValueError'  # a batch of 1 where the export takes 7


def test_bad_requests_fail_in_one_line_and_write_nothing(trained, tmp_path, monkeypatch, capsys):
    run_, _ = trained['classification']
    taken = tmp_path / 'taken'
    taken.mkdir()
    (taken / 'keep.txt').write_text('mine')
    with pytest.raises(InputError, match='exists.*--force'):
        export(run_.workdir, 'stablehlo', taken)
    assert [p.name for p in taken.iterdir()] == ['keep.txt']
    export(run_.workdir, 'stablehlo', taken, force=True)
    assert sorted(p.name for p in taken.iterdir()) == ['metadata.json', 'model.stablehlo']

    with pytest.raises(ConfigError, match='--format must be one of stablehlo, savedmodel, onnx'):
        export(run_.workdir, 'tflite', tmp_path / 'x')
    assert cli.main(['export', str(run_.workdir), '--format', 'onnx', '--output', str(tmp_path / 'x'),
                     '--batch', '0']) == 2
    assert "error: --batch takes a positive batch size or 'dynamic', got '0'" in capsys.readouterr().err
    unfinished = tmp_path / 'unfinished'
    unfinished.mkdir()
    for name in ('config.json', 'environment.json'):
        (unfinished / name).write_text((run_.workdir / name).read_text())
    assert cli.main(['export', str(unfinished), '--format', 'stablehlo', '--output', str(tmp_path / 'x')]) == 2
    assert 'no checkpoint' in capsys.readouterr().err.lower()

    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'jax2onnx' else find_spec(name, *a))
    with pytest.raises(MissingExtra, match=r"--format onnx needs jax2onnx: pip install 'jaxdl\[onnx\]'"):
        export(run_.workdir, 'onnx', tmp_path / 'x')
    assert not (tmp_path / 'x').exists() and not (tmp_path / 'x.partial').exists()


def test_an_operation_the_onnx_converter_lacks_is_named_with_the_formats_that_carry_it(tmp_path):
    from jaxdl.export import onnx as onnx_format
    from jaxdl.export.serving import Serving

    def apply(params, images):  # a host callback: no ONNX operator can hold it
        doubled = jax.pure_callback(lambda x: np.asarray(x) * 2, jax.ShapeDtypeStruct(images.shape, np.float32),
                                    images.astype(np.float32))
        return {'outputs': doubled.mean(axis=(1, 2, 3)) * params}

    model = Serving(apply, np.float32(1.0), (8, 8, 1), ('outputs',))
    with pytest.raises(ConfigError) as raised:
        onnx_format.write(model, None, tmp_path)
    message = str(raised.value)
    assert "'pure_callback'" in message and '--format stablehlo or --format savedmodel' in message
    assert '\n' not in message


def test_an_export_its_runtime_runs_differently_is_never_handed_off(trained, tmp_path, monkeypatch):
    from jaxdl.export import stablehlo

    run_, _ = trained['classification']
    loaded = stablehlo.load
    monkeypatch.setattr(stablehlo, 'load', lambda output: lambda images: {
        name: value[:1] for name, value in loaded(output)(images).items()})  # a runtime that drops rows
    with pytest.raises(RuntimeError, match='the exported model gives .* where its serving function gives'):
        export(run_.workdir, 'stablehlo', tmp_path / 'x')
    assert not (tmp_path / 'x').exists() and not (tmp_path / 'x.partial').exists()


def test_the_ema_weights_export_as_predict_reads_them(trained, tmp_path):
    run_, images = trained['classification']  # trained with an EMA of its weights
    metadata = export(run_.workdir, 'stablehlo', tmp_path / 'ema', weights='ema')
    assert metadata['run']['weights'] == 'ema'
    preprocessing = metadata['input']['preprocessing']  # the run's own: a centre crop, then back to 8 px
    assert (preprocessing['center_crop'], preprocessing['size'], preprocessing['antialias']) == (0.875, 8, False)
    got = load('stablehlo', tmp_path / 'ema')(images)
    expected = expected_outputs(load_run(run_.workdir, weights='ema'), images)
    np.testing.assert_allclose(got['probabilities'], expected['probabilities'], rtol=1e-5, atol=1e-5)
    raw = expected_outputs(run_, images)['probabilities']
    assert np.abs(raw - expected['probabilities']).max() > 1e-4  # the EMA is not the raw weights


@pytest.mark.slow  # it trains a second run, one without an EMA
def test_a_run_without_an_ema_is_refused_its_ema_export(trained, tmp_path):
    with pytest.raises(ConfigError, match='--weights ema: .* without an EMA'):
        export(trained['regression'][0].workdir, 'stablehlo', tmp_path / 'none', weights='ema')
