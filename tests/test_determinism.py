"""train.deterministic: XLA is asked for deterministic GPU ops before its backend starts, the run records it, and
`jaxdl rerun` names its absence as a reason when numbers differ. On this CPU machine the proof that the setting
reaches the backend is XLA's own dump of the debug options each program was compiled with."""
import json

import pytest

from conftest import ROOT, TEST_XLA_FLAGS, jaxdl

EXPERIMENT = ROOT / 'tests' / 'small_experiment.py'


def compiled_with(dump) -> set[str]:
    """The deterministic-ops settings of every program XLA compiled, as its debug_options dumps say."""
    files = list(dump.glob('*.debug_options'))
    assert files, f'XLA dumped no debug options into {dump}'
    return {line.strip() for f in files for line in f.read_text().splitlines() if 'deterministic_ops' in line}


@pytest.mark.slow  # the flag's reading and the GPU refusal below stay in the quick suite
@pytest.mark.parametrize('deterministic', [True, False])
def test_the_setting_reaches_the_backend_and_the_run_records_it(tmp_path, deterministic):
    dump = tmp_path / 'xla_dump'
    result = jaxdl('train', EXPERIMENT, '--workdir', tmp_path / 'run', '--no-progress',
                   "--config.train.duration='3 steps'", "--config.train.validate_every='3 steps'",
                   f'--config.train.deterministic={deterministic}',
                   env={'XLA_FLAGS': f'{TEST_XLA_FLAGS} --xla_dump_to={dump}'})
    assert result.returncode == 0, result.stderr[-3000:]
    settings = compiled_with(dump)
    assert settings == ({'xla_gpu_deterministic_ops: true'} if deterministic else set()), settings
    environment = json.loads((tmp_path / 'run' / 'environment.json').read_text())
    assert environment['deterministic'] == {'requested': deterministic, 'xla_gpu_deterministic_ops': deterministic}
    assert ('--xla_gpu_deterministic_ops=true' in environment['xla_flags']) == deterministic


@pytest.mark.parametrize('flags,value', [('', None), ('--xla_gpu_deterministic_ops', True),
                                         ('--xla_gpu_deterministic_ops=1', True),
                                         ('--xla_gpu_deterministic_ops=true --xla_gpu_deterministic_ops=false', False),
                                         ('--xla_gpu_deterministic_ops_x=true', None)])
def test_the_flag_is_read_as_xla_reads_it(monkeypatch, flags, value):
    from jaxdl import determinism
    monkeypatch.setenv('XLA_FLAGS', flags)
    assert determinism.flag_value() is value


def test_a_gpu_backend_started_without_it_is_an_error_and_rerun_names_it(monkeypatch):
    import jax
    from jaxdl import determinism
    from jaxdl.cli import placement_differences
    from jaxdl.errors import ConfigError
    monkeypatch.setenv('XLA_FLAGS', '')
    monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
    with pytest.raises(ConfigError, match=r"'train.deterministic': the GPU backend started without "
                                          r"--xla_gpu_deterministic_ops=true"):
        determinism.record(True)
    assert determinism.record(False) == {'requested': False, 'xla_gpu_deterministic_ops': False}
    recorded = {'backend': 'gpu', 'deterministic': {'requested': False, 'xla_gpu_deterministic_ops': False}}
    rerun = {'backend': 'gpu', 'deterministic': {'requested': True, 'xla_gpu_deterministic_ops': True}}
    reasons = placement_differences(recorded, rerun)
    assert reasons[0].startswith('deterministic ops: ') and len(reasons) == 2
    assert reasons[1].startswith('the recorded run trained on a GPU without deterministic ops')
    assert placement_differences(rerun, rerun) == []


def test_the_strided_max_pool_is_flax_max_pool_with_a_gradient_free_of_select_and_scatter():
    """XLA:GPU refuses select_and_scatter (flax max_pool's gradient) under deterministic ops: the ResNet stem's
    3x3 / 2 pool computes the same function without it."""
    import flax.linen as nn
    import jax
    import numpy as np
    from jaxdl.models.layers.pooling import strided_max_pool
    rng = np.random.default_rng(0)
    reference = lambda x: nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for shape in ((2, 16, 16, 3), (1, 15, 13, 2)):
        x = rng.integers(-2, 3, size=shape).astype(np.float32)  # few distinct values: ties in most windows
        pooled, pool_vjp = jax.vjp(lambda x: strided_max_pool(x, 3, 2, 1), x)
        expected, expected_vjp = jax.vjp(reference, x)
        np.testing.assert_array_equal(pooled, expected)
        cotangent = rng.normal(size=expected.shape).astype(np.float32)
        # the same windows' first maxima take the gradient; overlapping windows add in another order
        np.testing.assert_allclose(pool_vjp(cotangent)[0], expected_vjp(cotangent)[0], rtol=0, atol=1e-6)
    step_text = jax.jit(jax.grad(lambda x: strided_max_pool(x, 3, 2, 1).sum())).lower(x).as_text()
    assert 'select_and_scatter' not in step_text


@pytest.mark.parametrize('model,options', [
    ('resnet', {'depth': 10, 'width': 8, 'stem': 'imagenet'}), ('cnn', {'features': (8, 16), 'dense': 16}),
    ('unet', {'features': (8, 16)}), ('vit', {'size': 'tiny', 'patch': 8, 'depth': 1})])
def test_no_built_in_train_step_holds_an_op_xla_gpu_refuses_under_deterministic_ops(model, options):
    import jax
    import numpy as np
    import jaxdl
    from jaxdl.config import apply_updates, default_config
    config = apply_updates(default_config(), {'model.name': model, 'model.options': options,
                                              'train.duration': '10 steps'})
    task = jaxdl.build_task(config.task, 10)
    module = jaxdl.build_model(config.model, task.num_outputs, task.head_options)
    tx, _ = jaxdl.build_optimizer(config.optimizer, jaxdl.Plan.resolve(config, 10))
    state = jaxdl.create_train_state(module, tx, seed=0, image_shape=(32, 32, 3))
    batch = {'image': np.zeros((2, 32, 32, 3), np.float32), 'label': np.zeros(2, np.int32), 'valid': np.ones(2, bool)}
    text = jax.jit(lambda s, b: jaxdl.train_step(s, b, task=task)).lower(state, batch).as_text()
    assert 'select_and_scatter' not in text
