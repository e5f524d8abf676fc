"""Shared fixtures. Every test reads datasets from one temporary TFDS data dir (prepared offline once) and
never touches the network; multi-device tests run in subprocesses so XLA_FLAGS is set before jax loads."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Set before anything imports tensorflow_datasets or jax (tfds reads TFDS_DATA_DIR once, at import), and inherited
# by pytest-xdist's workers and every subprocess: one data dir, prepared offline once for the whole suite, and one
# persistent XLA compilation cache, so a subprocess that trains the model another test compiled loads it instead.
if 'JAXDL_TEST_ROOT' not in os.environ:
    os.environ['JAXDL_TEST_ROOT'] = tempfile.mkdtemp(prefix='jaxdl-tests-')
    _CREATED_ROOT = True
else:
    _CREATED_ROOT = False
os.environ['TFDS_DATA_DIR'] = os.path.join(os.environ['JAXDL_TEST_ROOT'], 'tfds')
os.environ['JAX_COMPILATION_CACHE_DIR'] = os.path.join(os.environ['JAXDL_TEST_ROOT'], 'xla_cache')
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Most of the suite's time is XLA compiling small programs for the CPU, and LLVM's optimisations are most of that:
# without them a compilation takes about 40% less CPU time (benchmarks/README.md). The tests check what programs
# compute and compare runs made under the same flags, which this does not change; `jaxdl` itself keeps XLA's default.
TEST_XLA_FLAGS = '--xla_backend_optimization_level=0'
os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()


def pytest_sessionfinish(session):
    if _CREATED_ROOT and not hasattr(session.config, 'workerinput'):  # the process that made it, not a worker
        shutil.rmtree(os.environ['JAXDL_TEST_ROOT'], ignore_errors=True)


@pytest.fixture(scope='session')
def data_dir():
    return os.environ['TFDS_DATA_DIR']


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
        full_env['XLA_FLAGS'] = f'{TEST_XLA_FLAGS} --xla_force_host_platform_device_count={devices}'
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd, **kwargs)


def free_port() -> int:
    """A TCP port on 127.0.0.1 free now, for a jax.distributed coordinator."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_job(commands: list[list[str]], *, env=None, timeout: float = 300, grace: float = 60) -> list[tuple[int, str, str]]:
    """Runs the processes of one distributed job side by side and returns each one's (returncode, stdout, stderr).

    Their output goes to files, not pipes: a process whose pipe filled while the test read another's would stop,
    and its peers with it, in their next collective. Once one process has ended, the others get `grace` seconds to
    end on their own and are then SIGKILLed, as a cluster scheduler ends a job one of whose processes died: a peer
    left waiting on a dead process's barrier or collective would otherwise wait out orbax's or gloo's timeouts."""
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryDirectory() as logs:
        streams = [(open(os.path.join(logs, f'{i}.out'), 'w+'), open(os.path.join(logs, f'{i}.err'), 'w+'))
                   for i in range(len(commands))]
        processes = [subprocess.Popen(command, stdout=out, stderr=err, text=True, cwd=ROOT, env=full_env)
                     for command, (out, err) in zip(commands, streams)]
        deadline, first_end = time.monotonic() + timeout, None
        while any(p.poll() is None for p in processes):
            now = time.monotonic()
            if first_end is None and any(p.poll() is not None for p in processes):
                first_end = now
            if now > deadline or (first_end is not None and now > first_end + grace):
                for p in processes:
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.2)
        results = []
        for p, (out, err) in zip(processes, streams):
            out.seek(0), err.seek(0)
            results.append((p.wait(), out.read(), err.read()))
            out.close(), err.close()
        return results


def jaxdl(*args, **kwargs) -> subprocess.CompletedProcess:
    return run([sys.executable, '-m', 'jaxdl', *map(str, args)], **kwargs)
