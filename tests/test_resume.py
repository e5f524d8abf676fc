"""Kill a run anywhere (SIGKILL: nothing flushed, nothing saved), run the same command again: it ends with the
summary, metrics.jsonl and parameters of a run never stopped, its best checkpoint included (DESIGN invariant 2).

The deterministic kills use JAXDL_KILL_AT (jaxdl/train/kill_points.py), which makes the training process kill
itself at a named point; the others come from outside, at random times. tests/resume_experiment.py improves until
step 55 and early-stops at step 65, with checkpoints every 4 steps and at every validation (every 5)."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxdl.config import load_config_file
from jaxdl.runs import load_run
from jaxdl.logging import TIMING_KEYS, read_jsonl
from jaxdl.train.loop import fit
from conftest import ROOT

EXPERIMENT = ROOT / 'tests' / 'resume_experiment.py'
BEST, FINAL = 55, 65


def outcome(workdir) -> dict:
    """Everything a resumed run must reproduce: summary (timing aside), log (timings aside), final and selected
    parameters with optimizer and model state."""
    summary = json.loads((workdir / 'summary.json').read_text())
    summary.pop('train_time_s')
    final, selected = load_run(workdir, 'latest'), load_run(workdir, 'best')
    return {'summary': summary,
            'records': [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_jsonl(workdir / 'metrics.jsonl')],
            'final_step': final.step, 'selected_step': selected.step,
            'final': jax.device_get(final.state.to_checkpoint()),
            'selected': jax.device_get(selected.state.to_checkpoint())}


def assert_same_outcome(a: dict, b: dict):
    for key in ('summary', 'records', 'final_step', 'selected_step'):
        assert a[key] == b[key], key
    for key in ('final', 'selected'):
        for x, y in zip(jax.tree.leaves(a[key]), jax.tree.leaves(b[key]), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=key)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    result = fit(load_config_file(str(EXPERIMENT)), tmp_path_factory.mktemp('resume') / 'straight', show_progress=False)
    assert result.summary['stop_reason'] == 'early_stopping' and result.summary['final_step'] == FINAL
    assert result.summary['selected_step'] == BEST  # the best is older than the two latest checkpoints
    return outcome(result.workdir)


def train(workdir, kill_at: str | None = None, **popen) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != 'JAXDL_KILL_AT'}
    if kill_at:
        env['JAXDL_KILL_AT'] = kill_at
    return subprocess.Popen([sys.executable, '-m', 'jaxdl', 'train', str(EXPERIMENT), '--workdir', str(workdir),
                             '--no-progress'], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


@pytest.mark.slow
def test_killed_at_every_kind_of_point_the_same_command_ends_as_a_run_never_stopped(uninterrupted, tmp_path):
    workdir = tmp_path / 'killed'
    points = ['step@2',            # before the first checkpoint
              'step@13',           # between checkpoints (12 saved, 15 not yet)
              'validation@35',     # in the middle of a validation
              f'saved@{BEST}',     # right after the best checkpoint committed
              'saving@56',         # while a later checkpoint is written asynchronously
              'saved@60',          # after a later, worse checkpoint: the best is no longer among the two latest
              'test',              # during the final test evaluation
              'summary']           # after summary.json
    for point in points:
        process = train(workdir, point)
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == -signal.SIGKILL, f'{point} was not reached: {stderr[-3000:]}'
    process = train(workdir)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    assert 'holds a finished run' in stderr  # killed after summary.json: nothing left to do
    assert_same_outcome(outcome(workdir), uninterrupted)


@pytest.mark.slow
def test_killed_at_random_times_from_outside_the_same_command_ends_as_a_run_never_stopped(uninterrupted, tmp_path):
    workdir, draw = tmp_path / 'killed', random.Random(0)
    kills = 0
    for attempt in range(8):
        process = train(workdir)
        if kills < 3:  # start-up takes a few seconds; then the whole run takes a few more
            deadline = time.time() + draw.uniform(4.0, 12.0)
            while time.time() < deadline and process.poll() is None:
                time.sleep(0.02)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
        _, stderr = process.communicate(timeout=300)
        if process.returncode == 0:
            break
        assert process.returncode == -signal.SIGKILL, stderr[-3000:]
    assert process.returncode == 0 and kills >= 1
    assert_same_outcome(outcome(workdir), uninterrupted)
