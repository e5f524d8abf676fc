"""Image regression: the rotated_digits builder, the regression task's exact metrics, and a run end to end."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxdl.config import ConfigError, apply_updates, default_config
from jaxdl.data.builders.digits import load_digit_images, split_indices
from jaxdl.data.builders.rotated_digits import COPIES, rotated_digit
from jaxdl.data.pipeline import Pipeline
from jaxdl.tasks import build_task
from jaxdl.train.loop import fit


def regression_config(**updates):
    config = apply_updates(default_config(), {
        'task.name': 'regression', 'task.options.std': (26.0,), 'dataset.name': 'rotated_digits',
        'dataset.mean': (0.1,), 'dataset.std': (0.25,), 'model.options.features': (8, 16), 'model.options.dense': 32,
        'optimizer.name': 'adam', 'train.batch_size': 128, 'train.duration': '60 steps',
        'train.validate_every': '30 steps', 'train.log_every': '10 steps'})
    return apply_updates(config, {k.replace('__', '.'): v for k, v in updates.items()})


def test_rotated_digits_keeps_the_digits_split_and_its_angles_straighten_the_image():
    config = regression_config()
    pipeline = Pipeline.for_config(config)
    sizes = {name: len(idx) * COPIES[name] for name, idx in split_indices(1797).items()}
    assert {s: pipeline.size(s) for s in sizes} == sizes  # every source image in one split only, copies in it
    batch = next(pipeline.eval_batches('test', 64))
    assert batch['target'].shape == (64, 1) and batch['target'].dtype == np.float32
    angles = batch['target'][:, 0]
    assert np.all(np.abs(angles) <= 45) and np.std(angles) > 15  # spread over [-45, 45]
    # The angle means what it says: turning a rendered digit back by -angle restores the upright rendering.
    digit = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    upright = rotated_digit(digit, 0.0).astype(float)
    straightened = np.asarray(Image.fromarray(rotated_digit(digit, 30.0)).rotate(-30.0, resample=Image.BILINEAR), float)
    wrong_way = np.asarray(Image.fromarray(rotated_digit(digit, 30.0)).rotate(30.0, resample=Image.BILINEAR), float)
    assert np.abs(straightened - upright).mean() < 0.3 * np.abs(wrong_way - upright).mean()


def test_metrics_are_exact_in_target_units_and_ignore_padding():
    task = build_task(regression_config(task__options__mean=(5.0,), task__options__std=(20.0,),
                                        task__options__threshold=3.0).task, 0)
    truth = np.array([[10.0], [-20.0], [0.0], [99.0]], np.float32)
    predicted = np.array([[12.0], [-20.5], [-4.0], [0.0]], np.float32)
    batch = {'target': truth, 'valid': np.array([True, True, True, False])}  # the last row is padding
    outputs = (predicted - 5.0) / 20.0  # the model works in normalised units
    np.testing.assert_allclose(task.predict(outputs), predicted, rtol=1e-6)
    sums = task.eval_metric_sums(outputs, batch, task.per_example_loss(outputs, batch))
    metrics = task.summarize(sums)
    errors = np.array([2.0, -0.5, -4.0])
    assert metrics['count'] == 3
    assert metrics['rmse'] == pytest.approx(np.sqrt(np.mean(errors ** 2)), rel=1e-5)
    assert metrics['mae'] == pytest.approx(np.mean(np.abs(errors)), rel=1e-5)
    assert metrics['within_threshold'] == pytest.approx(2 / 3)
    assert metrics['loss'] == pytest.approx(np.mean(0.5 * (errors / 20.0) ** 2), rel=1e-5)
    huber = build_task(regression_config(task__options__loss='huber', task__options__huber_delta=0.01).task, 0)
    big_error = huber.per_example_loss(jnp.array([[1.0]]), {'target': jnp.array([[0.0]])})
    assert float(big_error[0]) == pytest.approx(0.01 * (1.0 - 0.005))  # linear beyond delta


def test_regression_config_errors_name_the_key():
    for updates, key in (({'task.options.mean': (0.0, 1.0)}, 'task.options.mean'),
                         ({'task.options.std': (0.0,)}, 'task.options.std'),
                         ({'task.options.loss': 'l1'}, 'task.options.loss')):
        with pytest.raises(ConfigError, match=key.replace('.', r'\.')):
            build_task(regression_config(**{k.replace('.', '__'): v for k, v in updates.items()}).task)
    with pytest.raises(ConfigError, match=r'dataset\.augment\.flip_left_right'):
        Pipeline.for_config(regression_config(dataset__augment__flip_left_right=True))
    with pytest.raises(Exception, match="no feature 'angel'"):
        config = regression_config(task__options__targets=('angel',))
        Pipeline.for_config(config)


def test_a_regression_run_learns_angles_and_predict_prints_them(tmp_path, capsys):
    from jaxdl.cli import main
    result = fit(regression_config(), tmp_path / 'run', show_progress=False)
    test = result.summary['test']
    assert test['count'] == 718 and {'rmse', 'mae', 'within_threshold'} <= set(test)
    assert test['rmse'] < 15.0  # predicting 0 everywhere gives about 26 degrees
    records = [json.loads(line) for line in (result.workdir / 'metrics.jsonl').read_text().splitlines()]
    assert all('rmse' in r for r in records)
    # `jaxdl predict` on an image file: the angle in degrees, for a rotated digit drawn by the builder's function.
    digit = load_digit_images()[0][0]
    path = tmp_path / 'turned.png'
    Image.fromarray(rotated_digit(digit.astype(np.uint8), 30.0)).save(path)
    capsys.readouterr()
    assert main(['predict', str(result.workdir), str(path), '--json']) == 0
    angle = json.loads(capsys.readouterr().out)[0]['angle']
    assert 10.0 < angle < 50.0, angle  # a short run, so a loose bound; the default experiment reaches ~2 degrees
