"""Data kinds are contracts a task looks up, so a new kind is new files only: the built-in multi-label task
(its figures, its dataset, trained and shown through the CLI) and a user's own keypoint kind by import path."""
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from jaxdl.data import preprocess
from jaxdl.data.builders.shapes import draw_scene
from jaxdl.data.kinds import data_kind
from jaxdl.data.memory import open_split
from jaxdl.data.pipeline import Pipeline
from jaxdl.errors import ConfigError
from jaxdl.tasks import build_task
from jaxdl.tasks.multilabel import MultiLabelClassification
from jaxdl.train.loop import fit
from conftest import ROOT, jaxdl


def test_multilabel_figures_are_those_of_their_definitions_and_padding_counts_nothing():
    task = MultiLabelClassification(num_classes=3, class_names=('a', 'b', 'c'), threshold=0.5)
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]], np.float32)
    probs = np.array([[.9, .2, .6], [.7, .8, .1], [.6, .4, .3], [.2, .1, .4], [.3, .6, .2]], np.float32)
    logits = np.log(probs / (1 - probs))
    batch = {'labels': np.concatenate([labels, np.ones((1, 3), np.float32)]),
             'valid': np.array([True] * 5 + [False])}
    logits = np.concatenate([logits, np.zeros((1, 3), np.float32)])
    loss = task.per_example_loss(logits, batch)
    sums = task.eval_metric_sums(logits, batch, loss)
    result = task.summarize(sums, task.eval_predictions(logits, batch))
    # Class a: scores .9 .7 .6 .2 .3 for truths 1 0 1 0 1 -> ranked hits at 1, 3, 4: AP = (1 + 2/3 + 3/4) / 3.
    assert result['ap_per_class']['a'] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert result['map'] == pytest.approx(np.mean(list(result['ap_per_class'].values())))
    predicted = probs >= 0.5
    tp, fp, fn = (predicted & (labels > 0)).sum(), (predicted & (labels == 0)).sum(), (~predicted & (labels > 0)).sum()
    assert result['f1'] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert result['exact_match'] == pytest.approx(np.mean(np.all(predicted == (labels > 0), -1)))
    expected_loss = -np.mean(labels * np.log(probs) + (1 - labels) * np.log(1 - probs))
    assert result['loss'] == pytest.approx(expected_loss, rel=1e-5) and result['count'] == 5


def multilabel_config(make_config, **overrides):
    return make_config(task__name='multilabel', dataset__name='shapes_present', dataset__label='labels',
                       dataset__image_size=32, dataset__augment__flip_left_right=True, train__batch_size=100,
                       train__eval_batch_size=250, train__duration='4 epochs', optimizer__name='adam',
                       optimizer__learning_rate=0.003, **overrides)


@pytest.mark.slow
def test_the_multilabel_task_trains_on_its_dataset_and_predicts_through_the_cli(make_config, tmp_path):
    config = multilabel_config(make_config)
    pipeline = Pipeline.for_config(config)
    assert pipeline.spec.class_names == ('circle', 'square', 'triangle')
    batch = next(pipeline.eval_batches('validation', 250))
    raw = [sorted(set(ex['labels'].tolist())) for ex in
           open_split(pipeline.builder, 'validation').take(250).as_numpy_iterator()]
    assert [np.flatnonzero(row).tolist() for row in batch['labels']] == raw   # the classes present, multi-hot
    assert 1 < np.mean(batch['labels'].sum(1)) < 3 and batch['labels'].dtype == np.float32

    workdir = tmp_path / 'multilabel'
    result = fit(config, workdir, show_progress=False)
    test = result.summary['test']
    assert test['count'] == 500 and set(test['ap_per_class']) == {'circle', 'square', 'triangle'}
    assert test['map'] > 0.7  # a constant guess scores each class's share of the scenes: about 0.55
    scene = tmp_path / 'scene.png'
    Image.fromarray(draw_scene(np.random.default_rng(5))['image']).save(scene)
    shown = jaxdl('predict', workdir, scene, '--json')
    assert shown.returncode == 0, shown.stderr
    [prediction] = json.loads(shown.stdout)
    assert set(prediction['probabilities']) == {'circle', 'square', 'triangle'}
    assert all(p['probability'] >= 0.5 for p in prediction['present'])


def test_a_task_naming_no_data_kind_is_one_error_listing_them(make_config):
    with pytest.raises(ConfigError, match="has data_kind 'keypoint'; it must name a data kind: classification, "
                                          "detection, multilabel, regression, segmentation"):
        build_task(make_config(task__name='test_data_kinds:MisnamedKind').task)


class MisnamedKind(MultiLabelClassification):
    data_kind = 'keypoint'


def test_a_user_data_kind_by_import_path_moves_its_points_with_the_image_and_trains(make_config, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / 'tests' / 'user_code'))
    kind = data_kind('keypoints:KEYPOINTS')
    # One dot: after any flip, zoom and shift the brightest pixel of the augmented image is where the augmented
    # point says it is.
    image = np.zeros((24, 24, 1), np.float32)
    image[7, 15] = 1.0
    example = {'image': tf.constant(image), 'points': tf.constant([[7.5 / 24, 15.5 / 24], [0.5, 0.5]]),
               'visible': tf.constant([True, True])}
    augmentation = preprocess.Augmentation(flip_left_right=True, crop_padding=3, crop_area=0.6)
    moved = 0
    for seed in range(12):
        out = kind.augment(example, tf.constant([seed, 1], tf.int64), augmentation, None)
        if not out['visible'].numpy()[0]:
            continue
        y, x = np.unravel_index(np.argmax(out['image'].numpy()[..., 0]), (24, 24))
        np.testing.assert_allclose(out['points'].numpy()[0] * 24 - 0.5, [y, x], atol=1.0)
        moved += int(abs(x - 15) > 1 or abs(y - 7) > 1)
    assert moved >= 6

    config = make_config(task__name='keypoints:KeypointRegression', dataset__name='keypoints:Dots',
                         dataset__mean=(0.1,), dataset__std=(0.2,), dataset__augment__flip_left_right=True,
                         dataset__augment__crop_area=0.8, model__options__features=(16, 32),
                         model__options__dense=64, train__batch_size=32, train__duration='12 epochs',
                         optimizer__name='adam', optimizer__learning_rate=0.002)
    result = fit(config, tmp_path / 'keypoints', show_progress=False)
    test = result.summary['test']
    assert test['count'] == 64
    assert test['pixel_error'] < 3.5  # the image's centre as a guess is off by about 7 pixels
