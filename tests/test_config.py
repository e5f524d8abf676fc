import json

import pytest

from jaxdl import experiments
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


def test_an_experiment_that_is_neither_a_file_nor_built_in_names_the_built_in_ones():
    with pytest.raises(ConfigError, match=r"'digits_cn' is neither an experiment file .* digits_cnn, digits_resnet"):
        config_lib.load_config_file('digits_cn:adam')


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


# The built-in experiments by name, the examples of a user's own code by path.
EXPERIMENTS = experiments.names() + sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'experiments').rglob('*.py')
                                           if 'def get_config' in p.read_text())


@pytest.mark.parametrize('experiment', EXPERIMENTS)
def test_every_experiment_validates_and_builds_its_task_and_model(experiment):
    from jaxdl.models import build_model
    from jaxdl.tasks import build_task
    path = experiment if experiment in experiments.names() else str(ROOT / experiment)
    config = validate(config_lib.load_config_file(path))
    task = build_task(config.task, 4)
    build_model(config.model, task.num_outputs, task.head_options, image_shape=(8, 8, 1))


@pytest.mark.parametrize('variant', ['sgd', 'rmsprop', 'adam'])
def test_default_experiment_variants(variant):
    config = config_lib.load_config_file(f'digits_cnn:{variant}')
    assert validate(config).optimizer.name == variant


@pytest.mark.parametrize('key,value,message', [
    ('train.sharding_rules', (('[', 'fsdp'),), r"sharding_rules\[0\]': the regular expression '\[' does not compile: "
                                               r"unterminated character set at position 0"),
    ('optimizer.groups', (('backbone/(', 0.1),), r"groups\[0\]': the regular expression 'backbone/\(' does not "
                                                r"compile: missing \), unterminated subpattern at position 9"),
    ('transfer.reinitialize', ('*head',), r"reinitialize\[0\]': the regular expression '\*head' does not compile: "
                                          r"nothing to repeat at position 0"),
])
def test_a_regex_that_does_not_compile_is_named_with_the_reason(key, value, message):
    with pytest.raises(ConfigError, match=message):
        validate(apply_updates(default_config(), {key: value}))


@pytest.mark.parametrize('updates,message', [
    ({'train.mesh': 'data=3'}, r"'train.mesh': 'data=3' needs a runner over a mesh, and train.parallel='jit' has none"),
    ({'train.mesh': 'data=2', 'train.parallel': 'pmap'}, r"train.parallel='pmap' has none"),
    ({'train.mesh': 'data=2', 'train.parallel': 'fsdp'}, r"'data=2' has no fsdp axis"),
    ({'train.sharding_rules': (('.*', 'auto'),), 'train.parallel': 'sharded'},
     r"'train.sharding_rules': only train.parallel='fsdp' splits the state, and train.parallel='sharded' keeps it"),
    ({'train.fsdp_min_size': 10, 'train.parallel': 'jit'}, r"'train.fsdp_min_size': only train.parallel='fsdp'"),
])
def test_a_placement_setting_the_runner_cannot_use_is_an_error(updates, message):
    config = apply_updates(default_config(), {'train.parallel': 'jit', **updates})
    with pytest.raises(ConfigError, match=message):
        validate(config)


def test_auto_picks_the_runner_a_mesh_needs_and_the_mesh_must_fit_the_devices():
    from jaxdl.tasks import build_task
    from jaxdl.train.runners import choose_parallel, make_runner
    assert choose_parallel('auto', mesh='data=2') == 'sharded'
    assert choose_parallel('auto', mesh='data=1,fsdp=-1') == 'fsdp'
    assert choose_parallel('auto', splits_state=True) == 'fsdp'
    assert choose_parallel('auto') == 'jit'  # one CPU device here
    validate(apply_updates(default_config(), {'train.mesh': 'data=3'}))  # auto: a mesh runner is chosen
    with pytest.raises(ConfigError, match=r"'train.mesh': data 3 = 3 devices, but there are 1"):
        make_runner('auto', build_task(default_config().task, 10), mesh='data=3')


def test_every_parallel_name_builds_its_runner_from_its_module():
    """`train.parallel`'s names are the modules of jaxdl/train/runners (read from the files, so the config checks a
    name without jax), and each module's RUNNER builds the runner of its name (one CPU device here: all run)."""
    from jaxdl.registry import RUNNERS
    from jaxdl.tasks import build_task
    from jaxdl.train.runners import make_runner
    assert RUNNERS.builtin_names() == ('fsdp', 'jit', 'pmap', 'sharded')
    task = build_task(default_config().task, 10)
    assert [make_runner(name, task).kind for name in RUNNERS.builtin_names()] == list(RUNNERS.builtin_names())
    with pytest.raises(ConfigError, match=r"train.parallel': unknown runner 'shardd' \(did you mean 'sharded'\?\)"):
        make_runner('shardd', task)
