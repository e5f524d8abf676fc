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
