"""RandAugment: each op against PIL (what timm applies it with), the draws seeded by the example alone, the
magnitude scale, and the bad settings. (Resumed epochs read identical batches on both input paths: test_data.py,
test_streaming.py.)"""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from jaxdl.config import ConfigError
from jaxdl.data import randaugment
from jaxdl.data.randaugment import RandAugment

LEVEL = 0.9  # magnitude 9 of 10
IMAGE = np.random.RandomState(0).randint(0, 256, (24, 20, 3)).astype(np.uint8)
# A photo-like image too (smooth, with a narrow range), where autocontrast and equalize have work to do.
SMOOTH = (np.linspace(60, 160, 24)[:, None, None] + np.linspace(0, 40, 20)[None, :, None]
          + np.array([0, 10, 20])).astype(np.uint8)


def ours(op, image, sign=1.0):
    return np.asarray(randaugment._uint8_like(op(tf.constant(image, tf.float32), LEVEL, sign)))


def pil(image):
    return Image.fromarray(image)


@pytest.mark.parametrize('image', [IMAGE, SMOOTH], ids=['noise', 'smooth'])
def test_the_pixel_ops_are_pils(image):
    exact = {
        randaugment.auto_contrast: ImageOps.autocontrast(pil(image)),
        randaugment.equalize: ImageOps.equalize(pil(image)),
        randaugment.invert: ImageOps.invert(pil(image)),
        randaugment.posterize: ImageOps.posterize(pil(image), int(LEVEL * 4)),
        randaugment.solarize: ImageOps.solarize(pil(image), int(LEVEL * 256)),
    }
    for op, expected in exact.items():
        np.testing.assert_array_equal(ours(op, image), np.asarray(expected), err_msg=op.__name__)
    solarize_add = np.where(image < 128, np.minimum(image.astype(int) + int(LEVEL * 110), 255), image)
    np.testing.assert_array_equal(ours(randaugment.solarize_add, image), solarize_add)
    factor = LEVEL * 1.8 + 0.1
    # PIL's enhancers blend in floats and round once: within one grey level of ours
    for op, enhancer in ((randaugment.color, ImageEnhance.Color), (randaugment.contrast, ImageEnhance.Contrast),
                         (randaugment.brightness, ImageEnhance.Brightness),
                         (randaugment.sharpness, ImageEnhance.Sharpness)):
        expected = np.asarray(enhancer(pil(image)).enhance(factor)).astype(int)
        assert np.abs(ours(op, image) - expected).max() <= 1, op.__name__


def test_the_geometric_ops_are_pils_affine_transforms():
    height, width = SMOOTH.shape[:2]
    shear = LEVEL * 0.3
    cases = {randaugment.shear_x: (1, shear, 0, 0, 1, 0), randaugment.shear_y: (1, 0, 0, shear, 1, 0),
             randaugment.translate_x: (1, 0, LEVEL * 0.45 * width, 0, 1, 0),
             randaugment.translate_y: (1, 0, 0, 0, 1, LEVEL * 0.45 * height)}
    for op, matrix in cases.items():
        expected = np.asarray(pil(SMOOTH).transform((width, height), Image.AFFINE, matrix, Image.BILINEAR,
                                                    fillcolor=(128, 128, 128))).astype(int)
        assert np.abs(ours(op, SMOOTH) - expected).mean() < 2.0, op.__name__  # bilinear rounding, edges
    # PIL rotates about the image centre, counter-clockwise for a positive angle
    expected = np.asarray(pil(SMOOTH).rotate(LEVEL * 30, Image.BILINEAR, fillcolor=(128, 128, 128))).astype(int)
    assert np.abs(ours(randaugment.rotate, SMOOTH) - expected).mean() < 2.0


def test_the_draws_come_from_the_examples_seed_alone_and_the_magnitude_scales_them():
    image = tf.constant(SMOOTH, tf.float32)
    policy = RandAugment(layers=2, magnitude=9)
    run = tf.function(lambda seed: policy(image, seed))
    first = [np.asarray(run(tf.constant([7, i]))) for i in range(12)]
    assert all(np.array_equal(a, np.asarray(run(tf.constant([7, i])))) for i, a in enumerate(first))
    changed = [not np.array_equal(a, SMOOTH) for a in first]
    assert 2 < sum(changed) < 12  # each op applied with probability 1/2: some images pass untouched
    assert len({a.tobytes() for a in first}) > 6
    # magnitude 0: the geometric ops move nothing, the enhancers blend at 0.1, solarize inverts everything
    assert np.array_equal(ours_at(randaugment.shear_x, 0.0), SMOOTH)
    assert np.array_equal(ours_at(randaugment.solarize, 0.0), 255 - SMOOTH)
    assert [name for name, _ in randaugment.OPS] == [
        'AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize', 'Solarize', 'SolarizeAdd', 'Color', 'Contrast',
        'Brightness', 'Sharpness', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY']  # timm's RandAugment list


def ours_at(op, level):
    return np.asarray(randaugment._uint8_like(op(tf.constant(SMOOTH, tf.float32), level, 1.0))).astype(np.uint8)


def test_bad_randaugment_settings_are_one_line_before_any_step(make_config, tmp_path):
    from jaxdl.train.loop import fit
    for key, value, message in (('randaugment_magnitude', 11, r'must be in \[0, 10\]'),
                                ('randaugment_layers', -1, 'must be an int >= 0')):
        with pytest.raises(ConfigError, match=rf"'dataset.augment.{key}': {message}"):
            fit(make_config(**{f'dataset__augment__{key}': value}), tmp_path / key, show_progress=False)
    with pytest.raises(ConfigError, match=r"'dataset.augment.randaugment_layers': RandAugment moves the image "
                                          r"alone; the segmentation data kind's targets move with it"):
        fit(make_config(task__name='segmentation', dataset__name='shapes', model__name='unet', model__options={},
                        dataset__augment__randaugment_layers=2), tmp_path / 'segmentation', show_progress=False)
    assert not list(tmp_path.rglob('metrics.jsonl'))
