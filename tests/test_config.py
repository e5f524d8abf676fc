import json

import pytest

from jaxdl import config as config_lib
from jaxdl.config import ConfigError, apply_updates, default_config, parse_duration, parse_override, validate
from conftest import ROOT


def test_unknown_override_names_key_and_close_match():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.batchsize'.*'train.batch_size'"):
        apply_updates(default_config(), {'train.batchsize': 3})


def test_unknown_key_in_experiment_file_is_reported(tmp_path):
    file = tmp_path / 'exp.py'
    file.write_text('from jaxdl.config import default_config\n'
                    'def get_config():\n    c = default_config()\n    c.optimizer.learning_rat = 0.1\n    return c\n')
    with pytest.raises(ConfigError, match=r"learning_rat.*did you mean 'optimizer.learning_rate'"):
        config_lib.load_config_file(str(file))


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match="train.batch_size"):
        apply_updates(default_config(), {'train.batch_size': 'large'})


@pytest.mark.parametrize('key,value,message', [
    ('optimizer.name', 'adma', "did you mean 'adam'.*valid: adam, adamw, rmsprop, sgd"),
    ('optimizer.schedule.name', 'cosin', "did you mean 'cosine'"),
    ('model.name', 'resnt', "did you mean 'resnet'"),
    ('train.parallel', 'pmapp', 'valid: auto, fsdp, jit, pmap, sharded'),
    ('train.cpu_convolutions', 'onednn', 'valid: eigen, ynnpack'),
    ('train.batch_size', 0, 'positive integer'),
    ('train.duration', '3 weeks', 'not a duration'),
    ('dataset.std', (0.0,), 'must not contain zero'),
])
def test_validation_errors_are_clear(key, value, message):
    config = apply_updates(default_config(), {key: value})
    with pytest.raises(ConfigError, match=message):
        validate(config)


def test_durations():
    assert parse_duration('30 epochs', 'k').in_steps(19) == 570
    assert parse_duration('1 epoch', 'k').in_steps(19) == 19
    assert parse_duration('500 steps', 'k').in_steps(19) == 500
    assert parse_duration(7, 'k').in_steps(19) == 7


def test_override_parsing():
    assert parse_override('--config.train.batch_size=32') == ('train.batch_size', 32)
    assert parse_override('--config.train.duration=3 epochs') == ('train.duration', '3 epochs')
    config = apply_updates(default_config(), dict([parse_override('--config.dataset.mean=0.5')]))
    assert config.dataset.mean == (0.5,)
    with pytest.raises(ConfigError, match='--config.KEY=VALUE'):
        parse_override('--train.batch_size=3')


def test_config_json_round_trip():
    config = apply_updates(default_config(), {'optimizer.name': 'adam', 'model.options.features': (4, 8)})
    again = config_lib.config_from_json(config_lib.to_json(config))
    assert json.loads(config_lib.to_json(again)) == json.loads(config_lib.to_json(config))


EXPERIMENTS = sorted(str(p.relative_to(ROOT / 'experiments')) for p in (ROOT / 'experiments').rglob('*.py')
                     if 'def get_config' in p.read_text())


@pytest.mark.parametrize('path', EXPERIMENTS)
def test_every_experiment_validates_and_builds_its_task_and_model(path):
    from jaxdl.models import build_model
    from jaxdl.tasks import build_task
    config = validate(config_lib.load_config_file(str(ROOT / 'experiments' / path)))
    task = build_task(config.task, 4)
    build_model(config.model, task.num_outputs, task.head_options)


@pytest.mark.parametrize('variant', ['sgd', 'rmsprop', 'adam'])
def test_default_experiment_variants(variant):
    config = config_lib.load_config_file(f'{ROOT}/experiments/digits_cnn.py:{variant}')
    assert validate(config).optimizer.name == variant
