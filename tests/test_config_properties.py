"""Property-based: random wrong types, non-positive sizes, unknown names, unknown keys and missing fields all
end in a ConfigError that names the key, never in a traceback from deep inside jax or tf.data."""
import string

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from jaxdl.config import ConfigError, all_keys, apply_updates, default_config, validate

text = st.text(alphabet=string.ascii_letters + string.digits + '_-. ', max_size=12)
not_a_number = st.one_of(text, st.lists(st.integers(), max_size=2), st.none())
non_positive = st.integers(max_value=0)
negative = st.integers(max_value=-1)
outside_unit = st.one_of(st.floats(min_value=1.0, max_value=1e6), st.floats(max_value=-1e-6, min_value=-1e6))


def not_in(valid):
    return text.filter(lambda s: s not in valid)


BAD = {
    'task.name': not_in({'classification', 'regression', 'segmentation', 'detection'}).filter(lambda s: ':' not in s),
    'model.name': not_in({'cnn', 'resnet', 'unet'}).filter(lambda s: ':' not in s),
    'model.dtype': not_in({'float32', 'bfloat16'}),
    'optimizer.name': not_in({'sgd', 'rmsprop', 'adam', 'adamw'}),
    'optimizer.schedule.name': not_in({'constant', 'piecewise', 'cosine'}),
    'optimizer.learning_rate': st.one_of(st.floats(max_value=0.0, min_value=-1e6), text),
    'optimizer.momentum': outside_unit,
    'optimizer.b2': outside_unit,
    'optimizer.eps': st.floats(max_value=0.0, min_value=-1.0),
    'optimizer.weight_decay': st.floats(max_value=-1e-9, min_value=-1.0),
    'optimizer.accumulate_steps': non_positive,
    'optimizer.schedule.warmup': text.filter(lambda s: not s.strip().split(' ')[0].isdigit()),
    'optimizer.groups': st.lists(st.tuples(st.just('backbone'), st.floats(max_value=-1e-6, min_value=-9)), min_size=1, max_size=2),
    'train.batch_size': st.one_of(non_positive, not_a_number),
    'train.eval_batch_size': non_positive,
    'train.duration': st.one_of(text.filter(lambda s: not s.strip().split(' ')[0].isdigit()), non_positive),
    'train.validate_every': st.just('0 steps'),
    'train.parallel': not_in({'auto', 'jit', 'pmap', 'sharded', 'fsdp'}),
    'train.select': not_in({'best', 'last'}),
    'train.on_nonfinite': not_in({'stop', 'skip'}),
    'train.cpu_convolutions': not_in({'eigen', 'ynnpack'}),
    'train.early_stopping.patience': negative,
    'dataset.name': st.just(''),
    'dataset.label': st.just(''),
    'dataset.image_size': negative,
    'dataset.std': st.just((0.0,)),
    'dataset.shuffle_buffer': negative,
    'dataset.classes': st.one_of(st.lists(negative, min_size=1, max_size=3), st.just([1, 1])),
    'dataset.train_examples_per_class': negative,
    'dataset.augment.crop_padding': negative,
    'dataset.augment.crop_area': st.one_of(st.floats(min_value=1.0001, max_value=10), st.floats(max_value=0, min_value=-1)),
    'dataset.split_fractions': st.one_of(st.lists(st.floats(min_value=0.0, max_value=0.3), min_size=3, max_size=3),
                                         st.lists(st.floats(min_value=0.1, max_value=1.0), min_size=1, max_size=2)),
    'transfer.checkpoint': not_in({'best', 'latest'}).filter(lambda s: not s.isdigit()),
    'transfer.reinitialize': st.just(('head(',)),
}

# A model's or task's own options, checked by its constructor when the run builds it: (name, option) -> values.
BAD_OPTIONS = {
    ('model', 'cnn', 'features'): st.lists(non_positive, min_size=1, max_size=3),
    ('model', 'cnn', 'dense'): non_positive,
    ('model', 'cnn', 'dropout'): outside_unit,
    ('model', 'resnet', 'depth'): st.integers().filter(lambda d: d not in (10, 18, 34, 50, 101, 152)),
    ('model', 'resnet', 'width'): non_positive,
    ('model', 'resnet', 'stem'): not_in({'imagenet', 'small'}),
    ('model', 'unet', 'features'): st.lists(non_positive, min_size=1, max_size=3),
    ('model', 'unet', 'head_width'): non_positive,
    ('model', 'vit', 'size'): not_in({'tiny', 'small', 'base', 'large'}),
    ('model', 'vit', 'patch'): non_positive,
    ('model', 'vit', 'pool'): not_in({'cls', 'gap'}),
    ('model', 'vit', 'dropout'): outside_unit,
    ('task', 'classification', 'label_smoothing'): outside_unit,
    ('task', 'classification', 'top_k'): non_positive,
    ('task', 'classification', 'calibration_bins'): non_positive,
    ('task', 'regression', 'loss'): not_in({'mse', 'huber'}),
    ('task', 'regression', 'std'): st.lists(st.floats(max_value=0.0, min_value=-9), min_size=1, max_size=1),
    ('task', 'regression', 'threshold'): st.floats(max_value=0.0, min_value=-9),
    ('task', 'segmentation', 'class_weights'): st.lists(st.floats(max_value=-1e-6, min_value=-9), min_size=4, max_size=4),
    ('task', 'segmentation', 'ignore_label'): negative,
    ('task', 'detection', 'max_objects'): non_positive,
    ('task', 'detection', 'max_detections'): non_positive,
    ('task', 'detection', 'output_stride'): st.integers().filter(lambda s: s not in (1, 2, 4, 8)),
    ('task', 'detection', 'size_weight'): st.floats(max_value=-1e-6, min_value=-9),
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(BAD)), st.data())
def test_a_bad_value_is_a_config_error_naming_its_key(key, data):
    value = data.draw(BAD[key], label=key)
    with pytest.raises(ConfigError) as error:
        validate(apply_updates(default_config(), {key: value}))
    assert key in str(error.value)  # the full dotted key, not a leaf name that many keys share


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(all_keys(default_config())), text.filter(lambda s: s and s.isidentifier()))
def test_an_unknown_key_is_a_config_error(near, suffix):
    with pytest.raises(ConfigError, match='unknown config key'):
        apply_updates(default_config(), {f'{near}_{suffix}': 1})


@settings(max_examples=50, deadline=None)
@given(st.sampled_from([k for k in all_keys(default_config()) if '.' in k]))
def test_a_missing_field_is_a_config_error(key):
    config = default_config()
    *parents, leaf = key.split('.')
    node = config
    for part in parents:
        node = node[part]
    with config.unlocked():
        del node[leaf]
    with pytest.raises(ConfigError, match='missing'):
        validate(config)


def build(kind: str, name: str, options: dict):
    from jaxdl.models import build_model
    from jaxdl.tasks import build_task
    config = apply_updates(default_config(), {f'{kind}.name': name, f'{kind}.options': options})
    if kind == 'task':
        return build_task(config.task, 4)
    head = {'unet': {'head': 'pixels'}}.get(name, {'head': 'dense'})
    return build_model(config.model, 4, head)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(BAD_OPTIONS)), st.data())
def test_a_bad_option_is_a_config_error_naming_its_full_key(entry, data):
    kind, name, option = entry
    value = data.draw(BAD_OPTIONS[entry], label=f'{kind}.options.{option}')
    with pytest.raises(ConfigError) as error:
        build(kind, name, {option: value})
    assert f'{kind}.options.{option}' in str(error.value)


@pytest.mark.parametrize('kind,name', [('model', n) for n in ('cnn', 'resnet', 'unet', 'vit')] +
                         [('task', n) for n in ('classification', 'regression', 'segmentation', 'detection')])
def test_an_unknown_option_is_named_with_the_valid_ones(kind, name):
    build(kind, name, {})  # the defaults build
    with pytest.raises(ConfigError, match=rf"{kind}\.options.*'widht' is not an option of {'task ' if kind == 'task' else ''}'{name}'; its options: "):
        build(kind, name, {'widht': 3})
