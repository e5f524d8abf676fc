"""Data for segmentation and detection: the offline `shapes` builder, the catalog adapters (oxford_iiit_pet, voc)
under tfds.testing.mock_data, the data-contract checks, and geometric augmentation moving masks and boxes with
their images."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxdl.config import default_config
from jaxdl.data import checks, preprocess
from jaxdl.data.builders import shapes
from jaxdl.data.pipeline import Pipeline
from jaxdl.errors import DataError


def dense_config(task: str, dataset: str = 'shapes', **dataset_updates):
    config = default_config()
    config.task.name = task
    config.dataset.name = dataset
    config.model.name = 'unet'
    for key, value in dataset_updates.items():
        config.dataset[key] = value
    return config


def first_batch(pipeline: Pipeline, split: str = 'train', size: int = 4) -> dict:
    return next(iter(pipeline.eval_batches(split, size)))


# ------------------------------------------------------------------------------------------------ shapes


def test_shapes_scenes_are_seeded_and_boxes_frame_their_objects():
    a, b = shapes.draw_scene(np.random.default_rng([1, 2])), shapes.draw_scene(np.random.default_rng([1, 2]))
    np.testing.assert_array_equal(a['image'], b['image'])
    for i in range(50):
        scene = shapes.draw_scene(np.random.default_rng([7, i]))
        mask = scene['segmentation_mask'][..., 0]
        assert 1 <= len(scene['objects']['label']) <= 4
        assert np.all(np.isin(np.unique(mask), [0, 1, 2, 3]))
        # Each object's whole shape, redrawn from its box (the box frames the shape's pixels exactly).
        whole = []
        for box, label in zip(scene['objects']['bbox'], scene['objects']['label']):
            top, left, bottom, right = np.round(box * 64).astype(int)
            assert bottom - top == right - left
            whole.append(shapes._object_mask(int(label), top, left, bottom - top))
            assert np.all(mask[whole[-1]] != 0) and not np.any(whole[-1][:top]) and not np.any(whole[-1][bottom:])
        for i, label in enumerate(scene['objects']['label']):
            # At least half of each object stays visible (not covered by the objects drawn after it), and the
            # mask gives those pixels its class.
            visible = whole[i] & ~np.any(np.array(whole[i + 1:] or [np.zeros_like(whole[i])]), axis=0)
            assert visible.sum() >= 0.5 * whole[i].sum()
            assert np.all(mask[visible] == label + 1)
        assert np.all((scene['objects']['bbox'] >= 0) & (scene['objects']['bbox'] <= 1))


def test_shapes_builder_features_and_splits():
    pipeline = Pipeline.for_config(dense_config('detection'))
    info = pipeline.builder.info
    assert {s: info.splits[s].num_examples for s in ('train', 'validation', 'test')} == shapes.SPLIT_SIZES
    assert isinstance(info.features['objects']['bbox'], tfds.features.BBoxFeature)
    assert info.features['objects']['label'].names == list(shapes.CLASS_NAMES)
    batch = first_batch(pipeline)
    assert batch['image'].shape == (4, 64, 64, 3) and batch['boxes'].shape == (4, 50, 4)
    assert batch['box_valid'].sum() >= 4 and not batch['box_ignore'].any()
    seg = Pipeline.for_config(dense_config('segmentation'))
    assert seg.spec.class_names == ('background', 'circle', 'square', 'triangle')
    assert first_batch(seg)['mask'].shape == (4, 64, 64)


@pytest.mark.parametrize('field, change, message', [
    ('bbox', lambda ex: ex['objects']['bbox'][:1][:, [2, 1, 0, 3]], 'objects/bbox: boxes are (ymin, xmin, ymax, xmax)'),
    ('bbox', lambda ex: ex['objects']['bbox'][:1] + [0, 0, 0.9, 0], 'objects/bbox: coordinates must be normalised'),
    ('label', lambda ex: np.array([5]), 'objects/label: class ids must be in 0..2; found: 5'),
    ('segmentation_mask', lambda ex: ex['segmentation_mask'][:32], 'segmentation_mask: height and width differ'),
    ('segmentation_mask', lambda ex: ex['segmentation_mask'] + 4, 'segmentation_mask: class ids must be in 0..3'),
])
def test_builder_checks_name_the_example_and_field(field, change, message):
    good = shapes.draw_scene(np.random.default_rng([3, 0]))
    bad = {**good, 'objects': dict(good['objects'])}
    if field == 'segmentation_mask':
        bad[field] = change(good)
    else:
        bad['objects'] = {'bbox': good['objects']['bbox'][:1], 'label': good['objects']['label'][:1]}
        bad['objects'][field] = np.asarray(change(good), bad['objects'][field].dtype)
    checks.check_numpy_examples([('shapes example 0_0', good)], 4, 3)  # the good one passes
    with pytest.raises(DataError) as error:
        checks.check_numpy_examples([('shapes example 0_0', good), ('shapes example 0_1', bad)], 4, 3)
    assert 'shapes example 0_1' in str(error.value) and message in str(error.value)


# ------------------------------------------------------------------------------------------- catalog adapters


def _voc_examples(self, split, decoders=None, read_config=None, upside_down: int = -1, **kwargs):
    """Well-formed VOC-like examples (the features the detection adapter reads), one difficult object each;
    example `upside_down` has its second box upside down."""
    def examples():
        for i in range(6):
            boxes = np.array([[0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 0.9, 0.8]], np.float32)
            if i == upside_down:
                boxes[1] = [0.9, 0.3, 0.3, 0.8]
            yield {'image': np.full((40 + i, 48, 3), 30 * i, np.uint8),
                   'objects': {'bbox': boxes, 'label': np.array([i % 20, 14], np.int64),
                               'is_difficult': np.array([False, True])}}
    signature = {'image': tf.TensorSpec([None, None, 3], tf.uint8),
                 'objects': {'bbox': tf.TensorSpec([None, 4], tf.float32), 'label': tf.TensorSpec([None], tf.int64),
                             'is_difficult': tf.TensorSpec([None], tf.bool)}}
    return tf.data.Dataset.from_generator(examples, output_signature=signature)


def test_voc_adapter_reads_boxes_and_ignores_difficult_objects():
    config = dense_config('detection', 'voc', image_size=32)
    with tfds.testing.mock_data(as_dataset_fn=_voc_examples):
        pipeline = Pipeline.for_config(config)
        assert pipeline.spec.num_classes == 20 and pipeline.spec.class_names[14] == 'person'
        batch = first_batch(pipeline, 'validation', 4)
    assert batch['image'].shape == (4, 32, 32, 3)
    np.testing.assert_allclose(batch['boxes'][0, :2], [[0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 0.9, 0.8]])
    assert batch['box_valid'][:, :2].all() and not batch['box_valid'][:, 2:].any()
    assert batch['box_ignore'][:, 1].all() and not batch['box_ignore'][:, 0].any()
    np.testing.assert_array_equal(batch['box_labels'][:, 0], [0, 1, 2, 3])


def test_voc_adapter_refuses_bad_boxes_naming_the_example():
    config = dense_config('detection', 'voc', image_size=32)
    upside_down = lambda *args, **kwargs: _voc_examples(*args, upside_down=3, **kwargs)
    with tfds.testing.mock_data(as_dataset_fn=upside_down), pytest.raises(DataError) as error:
        first_batch(Pipeline.for_config(config), 'train', 6)
    assert str(error.value).startswith('voc train example 3 objects/bbox: boxes are (ymin, xmin, ymax, xmax) with ymin <= ymax')
    assert '[0.9 0.3 0.3 0.8]' in str(error.value)
    # tfds' random mock data draws every coordinate and every field's length independently.
    with tfds.testing.mock_data(num_examples=8), pytest.raises(DataError) as error:
        first_batch(Pipeline.for_config(config), 'train', 8)
    assert str(error.value).startswith('voc train example 0 objects:')


def _pet_examples(self, split, decoders=None, read_config=None, **kwargs):
    def examples():
        for i in range(4):
            trimap = np.full((30, 40, 1), 2, np.uint8)        # background
            trimap[5:25, 10:30] = 3                            # border
            trimap[8:22, 13:27] = 1                            # pet
            yield {'image': np.zeros((30, 40, 3), np.uint8), 'segmentation_mask': trimap}
    signature = {'image': tf.TensorSpec([None, None, 3], tf.uint8),
                 'segmentation_mask': tf.TensorSpec([None, None, 1], tf.uint8)}
    return tf.data.Dataset.from_generator(examples, output_signature=signature)


def test_pet_adapter_maps_the_trimap_and_resizes_masks_by_nearest_neighbour():
    config = dense_config('segmentation', 'oxford_iiit_pet', image_size=60)
    with tfds.testing.mock_data(as_dataset_fn=_pet_examples):
        pipeline = Pipeline.for_config(config)
        assert pipeline.spec.class_names == ('background', 'pet')
        mask = first_batch(pipeline, 'test', 2)['mask'][0]
    assert mask.shape == (60, 60) and set(np.unique(mask)) == {0, 1, 255}  # nothing in between after resizing
    assert mask[30, 30] == 1 and mask[0, 0] == 0 and mask[11, 30] == 255


def test_pet_adapter_refuses_a_mask_of_another_size():
    # Random mock data draws the image's and the mask's sizes independently.
    config = dense_config('segmentation', 'oxford_iiit_pet', image_size=32)
    with tfds.testing.mock_data(num_examples=4), pytest.raises(DataError) as error:
        first_batch(Pipeline.for_config(config), 'train', 4)
    assert str(error.value).startswith('oxford_iiit_pet train example 0 segmentation_mask:')


# ------------------------------------------------------------------------------------------- augmentation


def test_augmentation_moves_masks_and_boxes_with_the_image():
    """An image whose pixels encode their own class: after any flip, crop and shift the augmented mask must still
    match the augmented image pixel for pixel (away from class borders), pixels from outside the image are
    ignored, and the box still frames its object's pixels."""
    config = dense_config('segmentation')
    config.dataset.augment.flip_left_right = True
    config.dataset.augment.crop_area = 0.5
    config.dataset.augment.crop_padding = 6
    mask = np.zeros((64, 64), np.int32)
    mask[20:40, 10:34] = 2                                  # one object: its box is exactly its pixels' extent
    image = np.stack([mask * 40.0, np.zeros((64, 64)), np.ones((64, 64))], -1).astype(np.float32)
    example = {'image': tf.constant(image), 'mask': tf.constant(mask),
               'boxes': tf.constant([[20 / 64, 10 / 64, 40 / 64, 34 / 64], [0, 0, 0, 0]], tf.float32),
               'box_valid': tf.constant([True, False])}
    changed = kept = 0
    for seed in range(16):
        placement = preprocess.Placement.draw(tf.constant([seed, 3], tf.int64), example['image'],
                                              preprocess.Augmentation.of(config.dataset.augment))
        out = {'image': placement.image(example['image']), 'mask': placement.mask(example['mask'], 255)}
        out['boxes'], out['box_valid'] = placement.boxes(example['boxes'], example['box_valid'])
        new_image, new_mask = out['image'].numpy(), out['mask'].numpy()
        inside, outside = new_image[..., 2] > 0.999, new_image[..., 2] < 0.001
        assert np.all(new_mask[outside] == 255)
        # Where bilinear sampling did not blend two classes, nearest-neighbour sampling of the mask must give
        # exactly the class the image shows (a misaligned mask fails along every border).
        unblended = inside & ((np.abs(new_image[..., 0]) < 1e-3) | (np.abs(new_image[..., 0] - 80.0) < 1e-3))
        assert unblended.sum() > 0.85 * inside.sum()
        np.testing.assert_array_equal(new_mask[unblended] * 40.0, np.round(new_image[..., 0][unblended]))
        assert not out['box_valid'].numpy()[1]               # padding stays padding
        if out['box_valid'].numpy()[0]:
            kept += 1
            rows, cols = np.nonzero(new_mask == 2)
            extent = np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]) / 64
            np.testing.assert_allclose(out['boxes'].numpy()[0], extent, atol=1.5 / 64)
        changed += int(not np.array_equal(new_mask, mask))
    assert changed >= 12 and kept >= 8
