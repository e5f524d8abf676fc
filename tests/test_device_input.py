"""Feeding the device: batches carry uint8 pixels (a quarter of float32's bytes) that the steps normalise on the
device, in one place; images that are not 8-bit travel as float32 and pass through; batches are placed on the
devices ahead of the step that reads them."""
import jax
import numpy as np
import pytest
import tensorflow as tf

from jaxdl.config import apply_updates, default_config
from jaxdl.data import preprocess
from jaxdl.data.model_input import ImageFormat, Normalization
from jaxdl.data.pipeline import Pipeline, choose_source
from jaxdl.errors import ConfigError
from jaxdl.tasks.classification import Classification
from jaxdl.train.prefetch import prefetch_to_device
from jaxdl.train.runners import PlacedBatch, make_runner
from jaxdl.train.state import state_from_config
from jaxdl.train.step import eval_step, predict_step, train_step

TASK = Classification(num_classes=10)


def digits_config(**updates):
    return apply_updates(default_config(), {
        'dataset.mean': (0.5,), 'dataset.std': (0.25,), 'model.name': 'cnn', 'train.duration': '10 steps',
        **updates})


@pytest.fixture(scope='module')
def pipelines():
    config = digits_config()
    return config, Pipeline(config.dataset, TASK), Pipeline(config.dataset, TASK, uint8=False)


def test_batches_carry_uint8_pixels_that_the_steps_normalise(pipelines):
    config, pixels, floats = pipelines
    uint8_batch = next(pixels.train_batches(seed=0, global_batch=64))
    float_batch = next(floats.train_batches(seed=0, global_batch=64))
    assert uint8_batch['image'].dtype == np.uint8 and float_batch['image'].dtype == np.float32
    assert uint8_batch['image'].nbytes * 4 == float_batch['image'].nbytes
    np.testing.assert_array_equal(uint8_batch['label'], float_batch['label'])  # the same examples
    normalised = np.asarray(Normalization((0.5,), (0.25,))(uint8_batch['image']))
    np.testing.assert_allclose(normalised, float_batch['image'], rtol=0, atol=1e-6)

    state, _ = state_from_config(config, TASK, image_shape=(8, 8, 1), plan=_plan(config))
    assert state.normalization == Normalization((0.5,), (0.25,))  # the dataset's, carried by the state
    evaluate = jax.jit(lambda s, b: eval_step(s, b, task=TASK))
    (sums_pixels, _), (sums_floats, _) = evaluate(state, uint8_batch), evaluate(state, float_batch)
    np.testing.assert_allclose(float(sums_pixels['loss_sum']), float(sums_floats['loss_sum']), rtol=1e-5)
    train = jax.jit(lambda s, b: train_step(s, b, task=TASK))
    stepped_pixels, _ = train(state, uint8_batch)
    stepped_floats, _ = train(state, float_batch)
    for a, b in zip(jax.tree.leaves(stepped_pixels.params), jax.tree.leaves(stepped_floats.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    predicted = jax.jit(lambda s, x: predict_step(s, x, task=TASK))
    np.testing.assert_allclose(predicted(state, uint8_batch['image']), predicted(state, float_batch['image']),
                               rtol=1e-5, atol=1e-6)


def _plan(config):
    from jaxdl.config import Plan
    return Plan.resolve(config, 19)


def test_the_in_memory_cache_holds_uint8_and_auto_sizes_it_so(pipelines):
    _, pixels, floats = pipelines
    cached = pixels.source._decoded_split('train').element_spec['image']
    assert cached.dtype == tf.uint8 and floats.source._decoded_split('train').element_spec['image'].dtype == tf.float32
    # 12,000 images of 32x32x3 are 35 MB as uint8 and 141 MB as float32: a limit between the two keeps them in
    # memory only as pixels (a dataset that cannot stream then says how to bound its memory)
    dataset = apply_updates(default_config(), {'dataset.memory_limit_mb': 100}).dataset
    assert choose_source(dataset, pixels.builder, 12000, (32, 32, 3), uint8=True) == 'memory'
    with pytest.raises(ConfigError, match='would hold 141 MB'):
        choose_source(dataset, pixels.builder, 12000, (32, 32, 3), uint8=False)


@pytest.mark.parametrize('augment', [{'crop_padding': 3}, {'crop_area': 0.5, 'crop_padding': 2},
                                     {'flip_left_right': True, 'crop_padding': 4}])
def test_augmented_pixels_normalise_to_the_augmented_floats(augment):
    """The augmentations move uint8 pixels as they moved normalised floats: the outside of a moved image is the
    pixel that normalises to 0, as it was 0 before; inside, the two agree to the rounding of a pixel."""
    image_format = ImageFormat(0, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    normalization = image_format.normalization
    pixels = tf.constant(np.random.default_rng(0).integers(0, 256, (24, 24, 3)), tf.uint8)
    floats = preprocess.image_to_float(pixels, image_format)
    fields = {'flip_left_right': False, 'crop_padding': 0, 'crop_area': 1.0, **augment}
    as_pixels = preprocess.Augmentation(**fields, fill=normalization.zero_pixel)
    as_floats = preprocess.Augmentation(**fields)
    for seed in range(6):
        s = tf.constant([seed, 7], tf.int64)
        if as_pixels.crop_area < 1.0:  # the zooming window of the dense kinds
            moved = preprocess.Placement.draw(s, pixels, as_pixels).image(pixels)
            expected = preprocess.Placement.draw(s, floats, as_floats).image(floats)
        else:
            moved = preprocess.augment_image({'image': pixels}, s, as_pixels)['image']
            expected = preprocess.augment_image({'image': floats}, s, as_floats)['image']
        assert moved.dtype == tf.uint8
        # half a pixel of rounding, over the smallest std
        np.testing.assert_allclose(normalization(moved.numpy()), expected.numpy(), rtol=0, atol=0.5 / 255 / 0.2 + 1e-5)


def test_float32_arrays_travel_as_float32_and_pass_through_the_step(tmp_path):
    from jaxdl.data import from_arrays
    rng = np.random.default_rng(0)
    images = rng.normal(size=(40, 6, 6, 1)).astype(np.float32)  # model inputs in their own units, not pixels
    labels = rng.integers(0, 2, 40)
    name = from_arrays('float_inputs', {s: (images, labels) for s in ('train', 'validation', 'test')},
                       str(tmp_path))
    config = apply_updates(default_config(), {'dataset.name': name, 'dataset.data_dir': str(tmp_path),
                                              'dataset.shuffle_buffer': 0})
    task = Classification(num_classes=2)
    pipeline = Pipeline(config.dataset, task)
    batch = next(pipeline.eval_batches('test', 40))
    assert batch['image'].dtype == np.float32
    in_order = lambda x: x[np.lexsort(x.reshape(len(x), -1).T)]  # tfds stores examples in an order of its own
    # the defaults (mean 0, std 1) leave them as they are
    np.testing.assert_array_equal(in_order(batch['image']), in_order(images))
    assert Normalization((0.5,), (0.25,))(batch['image']) is batch['image']  # the step passes floats through
    shifted = Pipeline(apply_updates(config, {'dataset.mean': (1.0,), 'dataset.std': (2.0,)}).dataset, task)
    np.testing.assert_allclose(in_order(next(shifted.eval_batches('test', 40))['image']),
                               in_order((images - 1.0) / 2.0), rtol=1e-6)
    with pytest.raises(ConfigError, match='works on 8-bit images'):
        Pipeline(apply_updates(config, {'dataset.augment.randaugment_layers': 2}).dataset, task)


def test_prefetch_places_batches_two_ahead_in_order():
    read, placed = [], []

    def batches():
        for k in range(5):
            read.append(k)
            yield {'k': k}

    def place(batch):
        placed.append(batch['k'])
        return ('placed', batch['k'])

    seen = []
    for host, device in prefetch_to_device(batches(), place, depth=2):
        seen.append((host['k'], device))
        # while batch k is worked on, k + 1 and k + 2 are already placed (the last ones: what is left)
        assert placed == list(range(min(host['k'] + 3, 5)))
    assert seen == [(k, ('placed', k)) for k in range(5)] and read == list(range(5))


@pytest.mark.parametrize('parallel', ['jit', 'sharded'])
def test_a_runner_places_a_batch_where_its_steps_read_it(parallel, pipelines):
    config, pixels, _ = pipelines
    runner = make_runner(parallel, TASK)

    def fresh_state():  # the train step donates the state it is given
        state, _ = state_from_config(config, TASK, image_shape=(8, 8, 1), plan=_plan(config),
                                     shardings=runner.state_shardings)
        return runner.place_state(state)

    host = next(pixels.train_batches(seed=0, global_batch=64))
    placed = runner.place_batch(host)
    assert isinstance(placed, PlacedBatch)
    image = placed.arrays['image']
    assert isinstance(image, jax.Array) and image.dtype == np.uint8
    if runner.mesh is not None:
        assert image.sharding.mesh.shape == runner.mesh.shape  # split over the mesh's data axes
    # a placed batch trains and evaluates as the host batch it came from
    _, from_placed = runner.train(fresh_state(), placed)
    _, from_host = runner.train(fresh_state(), host)
    assert float(from_placed.sums['loss_sum']) == float(from_host.sums['loss_sum'])
    state = fresh_state()
    assert float(runner.eval(state, placed)[0]['loss_sum']) == float(runner.eval(state, host)[0]['loss_sum'])


@pytest.mark.parametrize('height, width', [(10, 17), (24, 24), (5, 24), (1, 1), (30, 12), (40, 50)])
def test_a_crop_resized_on_the_device_is_tfs_resize_of_it(height, width):
    """The random-resized crop travels as decoded, in the corner of a canvas of the model's size, and the step
    resizes it: TF's bilinear resize to float tolerance, or (a side longer than the canvas, halved on the host
    first) to half a pixel level, the rounding between the two halves."""
    from jaxdl.data.model_input import resize_windows
    image = tf.constant(np.random.default_rng(height * width).integers(0, 256, (height, width, 3)), tf.uint8)
    fitted, window = preprocess.fit_within(image, 24)
    assert fitted.dtype == tf.uint8 and window.numpy().tolist() == [min(height, 24), min(width, 24)] == fitted.shape[:2]
    canvas = np.zeros((1, 24, 24, 3), np.uint8)  # the padded batch's
    canvas[0, :window[0], :window[1]] = fitted.numpy()
    on_device = np.asarray(resize_windows(canvas, window.numpy()[None]))[0]
    expected = tf.image.resize(image, (24, 24), antialias=False).numpy()
    shrunk = height > 24 or width > 24
    np.testing.assert_allclose(on_device, expected, rtol=0, atol=0.5 + 1e-4 if shrunk else 1e-4)
    # Mirrored (the flip the stream only draws): the resize of the mirrored image; TF samples the mirrored columns
    # at positions rounded otherwise, a few thousandths of a pixel level apart
    mirrored = np.asarray(resize_windows(canvas, window.numpy()[None], np.array([True])))[0]
    np.testing.assert_allclose(mirrored, tf.image.resize(image[:, ::-1], (24, 24)).numpy(), rtol=0,
                               atol=0.5 + 1e-3 if shrunk else 1e-3)


def test_the_flip_is_drawn_as_tfs_stateless_random_flip_draws_it():
    """`preprocess.flip_draw`, which the stream sends to the steps and `augment_image` applies, is the draw of
    `tf.image.stateless_random_flip_left_right` the augmentation made before: the same images are mirrored."""
    image = tf.constant(np.arange(2 * 3 * 1, dtype=np.uint8).reshape(2, 3, 1))
    flip_only = preprocess.Augmentation(flip_left_right=True)
    drawn = []
    for seed in range(40):
        seeds = tf.constant([7, seed], tf.int64)
        flip_seed = tf.unstack(tf.random.experimental.stateless_split(seeds, 2))[0]
        before = tf.image.stateless_random_flip_left_right(image, flip_seed).numpy()
        np.testing.assert_array_equal(preprocess.augment_image({'image': image}, seeds, flip_only)['image'], before)
        drawn.append(bool(preprocess.flip_draw(seeds)))
        assert drawn[-1] == (not np.array_equal(before, image.numpy()))
    assert 0 < sum(drawn) < 40


def test_the_streamed_crop_and_flip_made_on_the_device_are_the_hosts(make_config):
    """The stream's random-resized crop and flip, drawn on the host and made by the step (the crop resized from
    its canvas, the flip only drawn there), give the images the host makes when it does all of it (`uint8=False`):
    the same examples, crops and mirrors, to the rounding of a crop shrunk on the host."""
    from types import SimpleNamespace

    from jaxdl.train.step import _model_batch
    config = make_config(**{
        'dataset__name': 'streaming_builders:TinyJpegShapes', 'dataset__source': 'stream',
        'dataset__image_size': 20, 'dataset__mean': (0.5,), 'dataset__std': (0.25,),
        'dataset__augment__random_resized_crop': True, 'dataset__augment__flip_left_right': True})
    on_device = next(Pipeline.for_config(config).train_batches(seed=3, global_batch=16))
    on_host = next(Pipeline.for_config(config, uint8=False).train_batches(seed=3, global_batch=16))
    assert on_device['image'].dtype == np.uint8 and 0 < on_device['image_flip'].sum() < 16  # both ways drawn
    assert 'image_flip' not in on_host and 'image_window' not in on_host
    state = SimpleNamespace(normalization=Normalization((0.5,), (0.25,)))
    images = np.asarray(_model_batch(state, on_device)['image'])
    np.testing.assert_allclose(images, on_host['image'], rtol=0, atol=(0.5 + 1e-3) / 255 / 0.25)
