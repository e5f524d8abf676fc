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
    """A small, fast digits config; keyword overrides use dotted keys with '__' for '.'."""
    from jaxdl.config import apply_updates, default_config

    def make(**overrides):
        config = default_config()
        config.dataset.mean = (0.5,)
        config.dataset.std = (0.5,)
        config.model.cnn.features = (8, 16)
        config.model.cnn.dense = 32
        config.optimizer.learning_rate = 0.05
        config.train.batch_size = 64
        config.train.eval_batch_size = 128
        config.train.duration = '2 epochs'
        config.train.log_every = '5 steps'
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
