"""Shared fixtures. Every test reads datasets from one temporary TFDS data dir (prepared offline once) and
never touches the network; multi-device tests run in subprocesses so XLA_FLAGS is set before jax loads."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session', autouse=True)
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp('tfds')
    os.environ['TFDS_DATA_DIR'] = str(path)  # inherited by subprocesses
    return str(path)


@pytest.fixture
def make_config():
    """The small, fast digits config of tests/small_experiment.py (which the CLI tests train too), with keyword
    overrides: dotted keys written with '__' for '.'."""
    from jaxdl.config import apply_updates, load_config_file

    def make(**overrides):
        config = load_config_file(str(ROOT / 'tests' / 'small_experiment.py'))
        return apply_updates(config, {k.replace('__', '.'): v for k, v in overrides.items()})
    return make


def run(args, *, devices: int | None = None, timeout: float = 300, env=None, cwd=ROOT, **kwargs) -> subprocess.CompletedProcess:
    """Runs a command with this interpreter's environment (and `devices` fake CPU devices)."""
    full_env = {**os.environ, **(env or {})}
    if devices:
        full_env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd, **kwargs)


def jaxdl(*args, **kwargs) -> subprocess.CompletedProcess:
    return run([sys.executable, '-m', 'jaxdl', *map(str, args)], **kwargs)
