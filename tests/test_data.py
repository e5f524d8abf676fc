import collections
import socket

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdl.config import apply_updates, default_config
from jaxdl.data.builders.digits import split_indices
from jaxdl.data.pipeline import Pipeline
from jaxdl.errors import DatasetNotAvailable
from jaxdl.tasks.classification import Classification

TASK = Classification(num_classes=10)  # of the 'label' feature


def epoch_batches(pipeline, *, epoch, seed, global_batch, start_batch=0):
    """One epoch of the endless training stream (from batch `start_batch` of that epoch)."""
    steps = pipeline.steps_per_epoch(global_batch)
    stream = pipeline.train_batches(seed=seed, global_batch=global_batch, start_step=epoch * steps + start_batch)
    return [next(stream) for _ in range(steps - start_batch)]


def dataset_config(**updates):
    return apply_updates(default_config(), {'dataset.' + k.replace('__', '.'): v for k, v in updates.items()}).dataset


@pytest.fixture(scope='module')
def digits():
    return Pipeline(dataset_config(), TASK)


def test_digits_splits_are_fixed_disjoint_and_complete(digits):
    parts = split_indices(1797)
    assert {k: len(v) for k, v in parts.items()} == {'train': 1258, 'validation': 180, 'test': 359}
    assert len(np.unique(np.concatenate(list(parts.values())))) == 1797
    assert {s: digits.size(s) for s in parts} == {'train': 1258, 'validation': 180, 'test': 359}
    assert digits.spec.num_classes == 10 and digits.spec.image_shape == (8, 8, 1)


def test_train_batches_follow_the_contract(digits):
    batches = list(epoch_batches(digits, epoch=0, seed=0, global_batch=100))
    assert len(batches) == 1258 // 100  # remainder dropped
    for b in batches:
        assert b['image'].shape == (100, 8, 8, 1) and b['image'].dtype == np.uint8  # pixels: the steps normalise them
        assert b['label'].dtype == np.int32 and b['valid'].dtype == bool and b['valid'].all()
    assert len(set(map(bytes, np.concatenate([b['image'] for b in batches]).reshape(1200, -1)))) > 1150  # no repeats


def test_shuffle_is_seeded_per_epoch_and_resumable(digits):
    epoch0 = list(epoch_batches(digits, epoch=0, seed=3, global_batch=64))
    again = list(epoch_batches(digits, epoch=0, seed=3, global_batch=64))
    epoch1 = list(epoch_batches(digits, epoch=1, seed=3, global_batch=64))
    resumed = list(epoch_batches(digits, epoch=0, seed=3, global_batch=64, start_batch=7))
    # the stream crosses epochs by itself: batch 19 of a stream from step 0 is batch 0 of epoch 1
    stream = digits.train_batches(seed=3, global_batch=64)
    crossed = [next(stream) for _ in range(20)][-1]
    np.testing.assert_array_equal(crossed['image'], epoch1[0]['image'])
    assert all(np.array_equal(a['image'], b['image']) for a, b in zip(epoch0, again))
    assert not np.array_equal(epoch0[0]['label'], epoch1[0]['label'])
    assert len(resumed) == len(epoch0) - 7
    assert all(np.array_equal(a['image'], b['image']) for a, b in zip(epoch0[7:], resumed))


def test_processes_take_their_rows_of_the_same_global_batches():
    whole = epoch_batches(Pipeline(dataset_config(), TASK), epoch=2, seed=1, global_batch=64)
    parts = [epoch_batches(Pipeline(dataset_config(), TASK, process_index=i, process_count=2),
                           epoch=2, seed=1, global_batch=64) for i in range(2)]
    for step, batch in enumerate(whole):
        joined = np.concatenate([parts[0][step]['label'], parts[1][step]['label']])
        np.testing.assert_array_equal(joined, batch['label'])


@pytest.mark.parametrize('batch_size,process_count', [(7, 1), (64, 1), (100, 1), (359, 1), (500, 1),
                                                      (64, 2), (30, 3), (12, 4)])
def test_evaluation_counts_every_example_exactly_once(batch_size, process_count):
    split = 'test'
    reference = collections.Counter()
    for ex in tfds.as_numpy(Pipeline(dataset_config(), TASK).builder.as_dataset(split=split)):
        reference[(int(ex['label']), ex['image'].tobytes())] += 1
    seen, batches_per_process = collections.Counter(), []
    for index in range(process_count):
        pipeline = Pipeline(dataset_config(), TASK, process_index=index, process_count=process_count)
        batches = list(pipeline.eval_batches(split, batch_size))
        batches_per_process.append(len(batches))
        for b in batches:
            assert len(b['valid']) == batch_size // process_count
            for label, image, valid in zip(b['label'], b['image'], b['valid']):
                if valid:
                    seen[(int(label), image.tobytes())] += 1
    assert len(set(batches_per_process)) == 1  # every process runs the same number of eval steps
    assert sum(seen.values()) == 359
    assert sorted(seen.values()) == sorted(reference.values())


def test_every_evaluation_pass_starts_at_the_first_batch_even_after_one_left_unfinished():
    pipeline = Pipeline(dataset_config(), TASK)  # one evaluation stream per split, read pass after pass
    first = list(pipeline.eval_batches('test', 100))
    assert next(pipeline.eval_batches('test', 100))['label'].tolist() == first[0]['label'].tolist()  # then stops
    again = list(pipeline.eval_batches('test', 100))
    assert len(again) == len(first) == 4
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a['image'], b['image'])
        np.testing.assert_array_equal(a['valid'], b['valid'])


@pytest.mark.parametrize('augment', [{'augment__crop_padding': 2, 'augment__flip_left_right': True},
                                     {'augment__flip_left_right': True, 'augment__randaugment_layers': 2}],
                         ids=['flip_and_crop', 'randaugment'])
def test_augmentation_is_per_example_seeded_and_resumable(augment):
    cfg = dataset_config(**augment)
    pipeline = Pipeline(cfg, TASK)
    plain = epoch_batches(Pipeline(dataset_config(), TASK), epoch=0, seed=0, global_batch=64)
    a = list(epoch_batches(pipeline, epoch=0, seed=0, global_batch=64))
    b = list(epoch_batches(pipeline, epoch=0, seed=0, global_batch=64, start_batch=5))
    assert not np.array_equal(a[0]['image'], plain[0]['image'])
    np.testing.assert_array_equal(a[0]['label'], plain[0]['label'])  # same order, only images change
    assert all(np.array_equal(x['image'], y['image']) for x, y in zip(a[5:], b))
    if 'augment__randaugment_layers' in augment:  # on top of the flips: the same flips, other pixels
        flips = epoch_batches(Pipeline(dataset_config(augment__flip_left_right=True), TASK), epoch=0, seed=0,
                              global_batch=64)
        assert not np.array_equal(a[0]['image'], flips[0]['image'])


@pytest.mark.parametrize('name,shape', [('mnist', (28, 28, 1)), ('fashion_mnist', (28, 28, 1)),
                                        ('cifar10', (32, 32, 3))])
def test_catalog_datasets_through_the_same_pipeline(name, shape):
    with tfds.testing.mock_data(num_examples=150):
        pipeline = Pipeline(dataset_config(name=name), TASK)
        assert pipeline.spec.image_shape == shape and pipeline.spec.num_classes == 10
        train = list(epoch_batches(pipeline, epoch=0, seed=0, global_batch=32))
        assert len(train) == 150 // 32 and train[0]['image'].shape == (32, *shape)
        evaluation = list(pipeline.eval_batches('test', 64))
        assert sum(int(b['valid'].sum()) for b in evaluation) == 150
    resized = dataset_config(name=name, image_size=16)
    with tfds.testing.mock_data(num_examples=10):
        assert Pipeline(resized, TASK).spec.image_shape == (16, 16, shape[2])


def test_missing_catalog_dataset_fails_with_instructions_without_the_network(tmp_path, monkeypatch):
    class TriedTheNetwork(BaseException):  # not an Exception: no library's handler can turn it into another error
        pass

    def refuse(*args):
        raise TriedTheNetwork
    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket.socket, 'connect_ex', refuse)
    with pytest.raises(DatasetNotAvailable, match='jaxdl prepare mnist --data-dir DIR'):
        Pipeline(dataset_config(name='mnist', data_dir=str(tmp_path)), TASK).size('train')


def test_unknown_dataset_suggests_names():
    with pytest.raises(DatasetNotAvailable, match="'digits'"):
        Pipeline(dataset_config(name='digitz'), TASK)
