"""Mixup and CutMix in the train step: the draws' arithmetic against references written here, the loss against
timm's soft targets with label smoothing, the partners inside a mapped axis, and the bad settings. (That every
runner and two processes mix the same pairs: test_parallel.py, test_multiprocess.py.)"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.config import ConfigError
from jaxdl.tasks.classification import Classification
from jaxdl.train.mixing import Mixing, draw, mix_batch, mix_images, partners
from jaxdl.train.state import create_train_state
from jaxdl.train.step import train_step

H, W = 12, 10


def test_cutmix_pastes_one_box_whose_area_is_one_minus_lambda():
    mixing = Mixing(cutmix_alpha=1.0)
    own, other = jnp.zeros((1, H, W, 1)), jnp.ones((1, H, W, 1))
    lams = []
    for i in range(40):
        d = draw(jax.random.PRNGKey(i), mixing, H, W)
        pasted = np.asarray(mix_images(own, other, d))[0, :, :, 0]
        rows, cols = np.nonzero(pasted)
        assert bool(d.cutmix)
        assert pasted.sum() == pytest.approx((1.0 - float(d.lam)) * H * W)
        if len(rows):  # one rectangle: every pixel between its extreme rows and columns
            assert pasted[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
        lams.append(float(d.lam))
    # Beta(1, 1) draws; the box centred anywhere (timm's rand_bbox) is clipped at the border, so it pastes less
    # than 1 - lambda of the draw: the share kept is above 1/2 on average
    assert 0.5 < np.mean(lams) < 0.9 and max(lams) - min(lams) > 0.4


def test_mixup_blends_each_example_with_the_reversed_batch_and_mix_prob_leaves_batches_alone():
    images = jax.random.normal(jax.random.PRNGKey(0), (6, H, W, 3))
    batch = {'image': images, 'label': jnp.arange(6), 'valid': jnp.ones(6, bool)}
    mixed, partner, lam = mix_batch(batch, jax.random.PRNGKey(3), Mixing(mixup_alpha=0.4))
    np.testing.assert_allclose(mixed['image'], lam * images + (1 - lam) * images[::-1], rtol=1e-6, atol=1e-6)
    assert partner['label'].tolist() == [5, 4, 3, 2, 1, 0] and partner['valid'].all()
    never = [mix_batch(batch, jax.random.PRNGKey(i), Mixing(mixup_alpha=0.4, prob=0.0001))[2] for i in range(20)]
    assert all(float(lam) == 1.0 for lam in never)
    switched = {bool(draw(jax.random.PRNGKey(i), Mixing(0.4, 1.0, switch_prob=0.5), H, W).cutmix) for i in range(20)}
    assert switched == {True, False}


def test_inside_a_mapped_axis_each_shard_mixes_with_the_mirror_shards_rows():
    x = jnp.arange(8 * 3.0).reshape(8, 3)
    mapped = jax.vmap(lambda shard: partners(shard, 'devices'), axis_name='devices')(x.reshape(4, 2, 3))
    np.testing.assert_array_equal(mapped.reshape(8, 3), x[::-1])


class Linear(nn.Module):
    @nn.compact
    def __call__(self, x, train=False, axis_name=None):
        return nn.Dense(4)(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize('mixing', [Mixing(mixup_alpha=0.8), Mixing(cutmix_alpha=1.0)], ids=['mixup', 'cutmix'])
def test_the_step_trains_on_timms_soft_targets_with_label_smoothing_and_counts_the_dominant_label(mixing):
    smoothing, classes = 0.1, 4
    task = Classification(num_classes=classes, label_smoothing=smoothing)
    model = Linear()
    state = create_train_state(model, optax.sgd(0.1), seed=0, image_shape=(H, W, 1)).replace(mixing=mixing)
    images = jax.random.normal(jax.random.PRNGKey(1), (8, H, W, 1))
    labels = jnp.array([0, 1, 2, 3, 0, 1, 2, 2])
    step = jax.jit(lambda s, b: train_step(s, b, task=task))
    dominant_mattered = False
    for at in range(8):  # eight steps' draws: Mixup's lambda falls on both sides of 1/2
        state = state.replace(step=jnp.int32(at))
        _, metrics = step(state, {'image': images, 'label': labels, 'valid': jnp.ones(8, bool)})

        # The reference: the same draw, the images mixed by hand, timm's mixup_target (smoothed one-hots blended).
        d = draw(jax.random.fold_in(state.rng, state.step), mixing, H, W)
        lam = float(d.lam)
        if bool(d.cutmix):
            y0, y1, x0, x1 = np.asarray(d.box)
            mixed = np.array(images)
            mixed[:, y0:y1, x0:x1] = np.asarray(images)[::-1, y0:y1, x0:x1]
        else:
            mixed = lam * np.asarray(images) + (1 - lam) * np.asarray(images)[::-1]
        smooth = lambda y: np.eye(classes)[y] * (1 - smoothing) + smoothing / classes
        target = lam * smooth(np.asarray(labels)) + (1 - lam) * smooth(np.asarray(labels)[::-1])
        logits = np.asarray(model.apply({'params': state.params}, jnp.asarray(mixed)), np.float64)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        assert float(metrics.sums['loss_sum']) == pytest.approx(float(-(target * log_probs).sum()), rel=1e-5)
        own, other = np.asarray(labels), np.asarray(labels)[::-1]
        correct = lambda truth, logits=logits: float((logits.argmax(-1) == truth).sum())
        assert float(metrics.sums['correct']) == correct(own if lam >= 0.5 else other)
        dominant_mattered |= lam < 0.5 and correct(own) != correct(other)
    assert dominant_mattered or mixing.cutmix_alpha  # CutMix's clipped boxes rarely keep less than half


def test_bad_mixing_settings_are_one_line_before_any_step(make_config, tmp_path):
    from jaxdl.train.loop import fit
    for key, value, message in (('mixup_alpha', -0.2, 'must be >= 0'), ('cutmix_alpha', -1, 'must be >= 0'),
                                ('mix_switch_prob', 1.5, r'must be a probability in \[0, 1\]'),
                                ('mix_prob', -0.1, r'must be a probability in \[0, 1\]')):
        with pytest.raises(ConfigError, match=rf"'dataset.augment.{key}': {message}"):
            fit(make_config(**{f'dataset__augment__{key}': value}), tmp_path / key, show_progress=False)
    from test_regression import regression_config
    with pytest.raises(ConfigError, match=r"'dataset.augment.mixup_alpha': Mixup and CutMix blend class labels; "
                                          r"the regression data kind's targets are not class labels"):
        fit(regression_config(dataset__augment__mixup_alpha=0.8), tmp_path / 'regression', show_progress=False)
    assert not list(tmp_path.rglob('metrics.jsonl'))
