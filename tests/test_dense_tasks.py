"""Segmentation and detection tasks: exact confusion-matrix metrics, the CenterNet targets and decoder against
pycocotools, and both tasks through the one fit() loop (resume, evaluate, predict pictures)."""
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import cli
from jaxdl.config import default_config
from jaxdl.runs import load_run
from jaxdl.logging import TIMING_KEYS, read_jsonl
from jaxdl.tasks.detection import Detection
from jaxdl.tasks.segmentation import Segmentation
from jaxdl.train.loop import fit
from jaxdl.train.step import add_sums

# ------------------------------------------------------------------------------------------------ segmentation


def _segmentation_batch(rng, n=3, size=6, classes=4, valid=(True, True, False)):
    mask = rng.integers(0, classes, (n, size, size))
    mask[rng.random(mask.shape) < 0.2] = 255  # ignored pixels
    return {'mask': jnp.asarray(mask), 'valid': jnp.asarray(valid)}, jnp.asarray(rng.normal(size=(n, size, size, classes)))


def test_segmentation_metrics_are_exact_over_batches_with_padding_and_ignored_pixels():
    task = Segmentation(num_classes=4, class_names=('background', 'a', 'b', 'c'))
    rng = np.random.default_rng(0)
    total, truth, predicted = None, [], []
    for valid in ((True, True, True), (True, False, False)):
        batch, logits = _segmentation_batch(rng, valid=valid)
        sums = task.eval_metric_sums(logits, batch, task.per_example_loss(logits, batch))
        total = sums if total is None else add_sums(total, sums)
        keep = np.asarray(batch['valid'])[:, None, None] & (np.asarray(batch['mask']) != 255)
        truth.append(np.asarray(batch['mask'])[keep])
        predicted.append(np.asarray(logits).argmax(-1)[keep])
    metrics = task.summarize(jax.device_get(total))
    truth, predicted = np.concatenate(truth), np.concatenate(predicted)
    ious = [np.sum((truth == c) & (predicted == c)) / np.sum((truth == c) | (predicted == c)) for c in range(4)]
    assert metrics['pixel_accuracy'] == pytest.approx(np.mean(truth == predicted), abs=1e-12)
    assert metrics['mean_iou'] == pytest.approx(np.mean(ious), abs=1e-12)
    assert metrics['iou']['b'] == pytest.approx(ious[2], abs=1e-12)
    assert metrics['count'] == 4


def test_segmentation_loss_ignores_pixels_and_weights_classes():
    rng = np.random.default_rng(1)
    batch, logits = _segmentation_batch(rng)
    task = Segmentation(num_classes=4)
    ignored = np.asarray(batch['mask']) == 255
    changed = jnp.where(jnp.asarray(ignored)[..., None], logits + 100.0, logits)
    np.testing.assert_allclose(task.per_example_loss(changed, batch), task.per_example_loss(logits, batch), rtol=1e-6)
    only_class_1 = Segmentation(num_classes=4, class_weights=(0.0, 1.0, 0.0, 0.0)).per_example_loss(logits, batch)
    per_pixel = -jax.nn.log_softmax(logits)[..., 1]
    is_1 = np.asarray(batch['mask']) == 1
    expected = [(per_pixel[i][is_1[i]]).mean() for i in range(3)]
    np.testing.assert_allclose(only_class_1, expected, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ detection


def _perfect_outputs(task: Detection, batch, grid=(16, 16)):
    """Model outputs a perfect detector would give: +12 logits at object centres (else -12), exact boxes."""
    heatmap, cell, size, offset, active = task.targets(batch, grid)
    logits = jnp.where(heatmap >= 1.0, 12.0, -12.0)
    n, m = active.shape
    box = jnp.zeros((n, *grid, 4))
    rows = jnp.broadcast_to(jnp.arange(n)[:, None], (n, m))
    values = jnp.concatenate([size, offset], -1)
    box = box.at[rows, cell[..., 0], cell[..., 1]].set(jnp.where(active[..., None], values, 0.0))
    return jnp.concatenate([logits, box], -1)


def _detection_batch():
    boxes = np.zeros((2, 5, 4), np.float32)
    boxes[0, :3] = [[0.1, 0.1, 0.4, 0.3], [0.5, 0.5, 0.9, 0.95], [0.1, 0.6, 0.3, 0.9]]
    boxes[1, :2] = [[0.2, 0.2, 0.7, 0.6], [0.6, 0.05, 0.95, 0.4]]
    valid = np.zeros((2, 5), bool)
    valid[0, :3] = valid[1, :2] = True
    return {'boxes': jnp.asarray(boxes), 'box_labels': jnp.asarray([[0, 2, 1, 0, 0], [1, 1, 0, 0, 0]]),
            'box_valid': jnp.asarray(valid), 'box_ignore': jnp.zeros((2, 5), bool), 'valid': jnp.asarray([True, True])}


def test_perfect_outputs_decode_to_the_ground_truth_and_score_map_1():
    task = Detection(num_classes=3, max_detections=10, class_names=('a', 'b', 'c'))
    batch = _detection_batch()
    outputs = _perfect_outputs(task, batch)
    decoded = task.decode(outputs)
    top = np.asarray(decoded['scores']) > 0.5
    assert top.sum(1).tolist() == [3, 2]  # one peak per object, nothing else
    for i in range(2):
        found = sorted(map(tuple, np.round(np.asarray(decoded['boxes'][i][top[i]]), 5)))
        truth = sorted(map(tuple, np.round(np.asarray(batch['boxes'][i][np.asarray(batch['box_valid'][i])]), 5)))
        np.testing.assert_allclose(found, truth, atol=1e-5)
    metrics = task.summarize(task.train_metric_sums(outputs, batch, task.per_example_loss(outputs, batch)),
                             jax.device_get(task.eval_predictions(outputs, batch)))
    assert metrics['map'] == pytest.approx(1.0) and metrics['map_50'] == pytest.approx(1.0)
    assert metrics['loss'] < 0.01
    # A detector that swaps two classes loses exactly those objects' classes.
    swapped = outputs.at[..., :3].set(outputs[..., [1, 0, 2]])
    worse = task.summarize(task.train_metric_sums(swapped, batch, task.per_example_loss(swapped, batch)),
                           jax.device_get(task.eval_predictions(swapped, batch)))
    assert worse['map_50'] < 0.7 and worse['ap_per_class']['c'] == pytest.approx(1.0)


def test_ignored_ground_truth_is_neither_a_miss_nor_a_false_positive():
    task = Detection(num_classes=3, max_detections=10)
    batch = _detection_batch()
    outputs = _perfect_outputs(task, batch)  # finds every object
    ignoring = {**batch, 'box_ignore': batch['box_ignore'].at[0, 1].set(True)}
    predictions = jax.device_get(task.eval_predictions(outputs, ignoring))
    assert task.summarize(task.train_metric_sums(outputs, ignoring, task.per_example_loss(outputs, ignoring)),
                          predictions)['map'] == pytest.approx(1.0)
    # With that object unmarked but not detected, it is a miss.
    missed = outputs.at[0, :, :, 2].set(-12.0)
    predictions = jax.device_get(task.eval_predictions(missed, batch))
    assert task.summarize(task.train_metric_sums(missed, batch, task.per_example_loss(missed, batch)),
                          predictions)['map'] < 0.9


# ------------------------------------------------------------------------------------------------ through fit()


def dense_run_config(task: str):
    config = default_config()
    config.task.name = task
    if task == 'detection':
        config.task.options.max_objects = 8
        config.task.options.max_detections = 20
    config.dataset.name = 'shapes'
    config.dataset.train_split = 'train[:64]'
    config.dataset.validation_split = 'validation[:40]'
    config.dataset.test_split = 'test[:40]'
    config.dataset.mean = (0.5,)
    config.dataset.std = (0.25,)
    config.dataset.augment.flip_left_right = True
    config.dataset.augment.crop_area = 0.7
    config.model.name = 'unet'
    config.model.options.features = (8, 16, 16)
    config.model.options.head_width = 8
    config.optimizer.name = 'adam'
    config.optimizer.learning_rate = 0.003
    config.train.batch_size = 16
    config.train.eval_batch_size = 32  # 40 examples: the last batch is padded
    config.train.duration = '6 steps'
    config.train.validate_every = '3 steps'
    config.train.checkpoint_every = '3 steps'
    config.train.log_every = '2 steps'
    return config


def test_segmentation_trains_resumes_exactly_and_draws_its_masks(tmp_path, capsys):
    config = dense_run_config('segmentation')
    whole = fit(config, tmp_path / 'whole', show_progress=False)
    test = whole.summary['test']
    assert test['count'] == 40 and 0.0 < test['mean_iou'] <= 1.0 and set(test['iou']) == {
        'background', 'circle', 'square', 'triangle'}
    # A crash after step 3: the step-6 checkpoint and the summary never got written. The step-3 checkpoint
    # carries the confusion matrix of step 3's training sums (logged at step 4), so the resumed log is the same.
    crashed = tmp_path / 'crashed'
    shutil.copytree(tmp_path / 'whole', crashed)
    shutil.rmtree(crashed / 'checkpoints' / '6')
    (crashed / 'summary.json').unlink()
    resumed = fit(config, crashed, show_progress=False)
    records = lambda run: [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS}
                           for line in (run / 'metrics.jsonl').read_text().splitlines()]
    assert records(crashed) == records(tmp_path / 'whole')
    jax.tree.map(np.testing.assert_array_equal, resumed.state.params, whole.state.params)

    # The U-Net encoder is a backbone like any other: a detection run starts from the segmentation run's encoder
    # (weights and BatchNorm statistics) with its own, freshly initialised decoder and heads.
    from jaxdl.config import Plan
    from jaxdl.train.state import state_from_config
    from jaxdl.transfer import initialize_from
    detection = dense_run_config('detection')
    detection.transfer.init_from = str(tmp_path / 'whole')
    from jaxdl.tasks import build_task
    state, _ = state_from_config(detection, build_task(detection.task, 3), image_shape=(64, 64, 3),
                                 plan=Plan.resolve(detection, 4))
    started, report = initialize_from(state, detection.transfer, detection.model)
    assert report.loaded and all('/backbone/' in path for path in report.loaded)
    assert report.reinitialized and all('/head/' in path for path in report.reinitialized)
    jax.tree.map(np.testing.assert_array_equal, started.params['backbone'], whole.state.params['backbone'])
    jax.tree.map(np.testing.assert_array_equal, started.model_state['batch_stats']['backbone'],
                 whole.state.model_state['batch_stats']['backbone'])

    # predict: the mask overlaid on the image, written as a PNG.
    from PIL import Image
    scene = tmp_path / 'scene.png'
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(scene)
    assert cli.main(['predict', str(tmp_path / 'whole'), str(scene), '--output-dir', str(tmp_path / 'out')]) == 0
    picture = Image.open(tmp_path / 'out' / 'scene.segmentation.png')
    assert picture.size == (256, 256)
    assert 'background' in capsys.readouterr().out


def test_detection_trains_evaluates_with_pycocotools_and_draws_its_boxes(tmp_path, capsys):
    config = dense_run_config('detection')
    config.train.duration = '12 steps'
    result = fit(config, tmp_path / 'run', show_progress=False)
    test = result.summary['test']
    assert test['count'] == 40 and 0.0 <= test['map'] <= test['map_50'] <= 1.0
    # It learns: the held-out loss falls (by a quarter in 12 steps; mAP needs hundreds of steps to leave 0).
    validation = [r['loss'] for r in read_jsonl(tmp_path / 'run' / 'metrics.jsonl') if r['split'] == 'validation']
    assert len(validation) == 4 and validation[-1] < 0.85 * validation[0], validation
    assert set(test['ap_per_class']) == {'circle', 'square', 'triangle'}
    run = load_run(tmp_path / 'run')
    assert run.class_names == ['circle', 'square', 'triangle']
    assert cli.main(['evaluate', str(tmp_path / 'run'), '--split', 'validation[:40]']) == 0
    evaluated = json.loads(capsys.readouterr().out)
    validation = [json.loads(line) for line in (tmp_path / 'run' / 'metrics.jsonl').read_text().splitlines()
                  if json.loads(line)['split'] == 'validation' and json.loads(line)['step'] == evaluated['step']]
    assert evaluated['map'] == pytest.approx(validation[0]['map'])

    from PIL import Image
    scene = tmp_path / 'scene.png'
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(scene)
    assert cli.main(['predict', str(tmp_path / 'run'), str(scene), '--min-score', '0', '--json',
                     '--output-dir', str(tmp_path)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results[0]['detections']) == 20  # every decoded box at min score 0
    assert Image.open(results[0]['picture']).size == (256, 256)


def test_an_image_size_the_unet_cannot_halve_is_a_config_error():
    import optax
    from jaxdl.config import ConfigError
    from jaxdl.models import build_model
    from jaxdl.train.state import create_train_state
    config = dense_run_config('segmentation')
    with pytest.raises(ConfigError, match="dataset.image_size.*divisible by 4"):
        create_train_state(build_model(config.model, 4, {'head': 'pixels'}), optax.sgd(0.1), seed=0, image_shape=(30, 30, 3))
