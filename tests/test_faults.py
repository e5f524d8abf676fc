"""Faults a long run meets: preemption signals, damaged checkpoints, a diverging loss, two runs on one workdir,
an unwritable or full disk. Each leaves what was saved intact and says what to do."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxdl.checkpoint import Checkpoints
from jaxdl.errors import CheckpointError, TrainingDiverged, WorkdirError
from jaxdl.logging import display_path
from jaxdl.runs import load_run
from jaxdl.logging import TIMING_KEYS, read_jsonl
from jaxdl.train.loop import fit
from conftest import ROOT

EXPERIMENT = ROOT / 'tests' / 'small_experiment.py'


def records(workdir):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_jsonl(workdir / 'metrics.jsonl')]


def same_params(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_sigint_and_sigterm_become_a_stop_request_inside_fit_only():
    from jaxdl.train.guard import StopSignals
    before = signal.getsignal(signal.SIGINT)
    for signum in (signal.SIGINT, signal.SIGTERM):
        with StopSignals() as stop:
            os.kill(os.getpid(), signum)
            time.sleep(0.01)  # delivery happens between bytecodes
            assert stop.received == signal.Signals(signum).name
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handlers are back


def test_sigterm_saves_a_checkpoint_and_the_same_command_resumes(tmp_path, make_config, capsys):
    """`jaxdl train` in this process, sent SIGTERM by a watcher thread once training has begun."""
    import threading
    from jaxdl.cli import main
    workdir = tmp_path / 'run'
    command = ['train', str(EXPERIMENT), '--workdir', str(workdir), '--no-progress',
               '--config.train.duration=150 steps', '--config.train.validate_every=50 steps']

    def send_sigterm_once_training():
        deadline = time.time() + 120
        log = workdir / 'metrics.jsonl'  # created empty when the run opens; its first row comes from training
        while time.time() < deadline and not (log.exists() and log.stat().st_size):
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)
    # Outside the run (before StopSignals installs its handler, after it restores ours) a SIGTERM must not end
    # this pytest worker: a signal that comes too late fails the test below instead.
    before = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        watcher = threading.Thread(target=send_sigterm_once_training)
        watcher.start()
        code = main(command)
        watcher.join()
    finally:
        signal.signal(signal.SIGTERM, before)
    stderr = capsys.readouterr().err
    assert code == 75, stderr
    stopped = int(stderr.split('stopped after step ')[1].split()[0])
    assert 'SIGTERM received' in stderr and 'run the same command again' in stderr
    assert 0 < stopped < 150 and stopped in Checkpoints(workdir / 'checkpoints', read_only=True).all_steps()
    assert main(command) == 0 and f'resuming {display_path(workdir)} from step {stopped}' in capsys.readouterr().err
    # The run stopped mid-interval (its pending training sums in the checkpoint) ends as one never stopped.
    straight = fit(make_config(train__duration='150 steps', train__validate_every='50 steps'), tmp_path / 'straight',
                   show_progress=False)
    assert records(workdir) == records(tmp_path / 'straight')
    assert same_params(load_run(workdir, 'latest').state.params, load_run(straight.workdir, 'latest').state.params)


def diverging(make_config, on_nonfinite):
    # Sane for the first epoch (19 steps, validated and checkpointed), then a learning rate that explodes.
    return make_config(train__duration='3 epochs', train__on_nonfinite=on_nonfinite,
                       optimizer__schedule__name='piecewise', optimizer__schedule__drop_every='1 epoch',
                       optimizer__schedule__drop_factor=1e12)


def test_a_diverging_loss_stops_the_run_naming_the_step_and_keeps_the_last_checkpoint(make_config, tmp_path):
    workdir = tmp_path / 'run'
    with pytest.raises(TrainingDiverged, match=r'non-finite loss or gradient at step (\d+)') as error:
        fit(diverging(make_config, 'stop'), workdir, show_progress=False)
    step = int(error.value.args[0].split('at step ')[1].split(':')[0])
    assert 19 < step <= 38 and 'The last checkpoint (step 19) is intact' in str(error.value)
    checkpoints = Checkpoints(workdir / 'checkpoints', read_only=True)
    assert checkpoints.all_steps() == [19]
    run = load_run(workdir, 'latest')
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(run.state.params))


def test_skipping_non_finite_updates_keeps_the_parameters_finite(make_config, tmp_path):
    result = fit(diverging(make_config, 'skip'), tmp_path / 'run', show_progress=False)
    assert result.summary['skipped_updates'] > 0 and result.summary['final_step'] == 57
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(result.state.params))
    # The training rows average the updates that were applied. Validation evaluates the parameters as they are:
    # finite, but the one update of rate 1e12 that came out finite (step 20) may leave logits that overflow on
    # some CPUs, so its loss is not asserted.
    rows = read_jsonl(tmp_path / 'run' / 'metrics.jsonl')
    assert all(np.isfinite(r['loss']) for r in rows if r['split'] == 'train')


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(make_config, tmp_path):
    config = make_config(train__duration='3 epochs')
    straight = fit(config, tmp_path / 'straight', show_progress=False)
    workdir = tmp_path / 'run'
    shutil.copytree(tmp_path / 'straight', workdir)
    (workdir / 'summary.json').unlink()
    steps = Checkpoints(workdir / 'checkpoints', read_only=True).all_steps()
    assert steps[-2:] == [38, 57]
    for path in (workdir / 'checkpoints' / '57' / 'state').rglob('*'):
        if path.is_file() and path.parent.name == 'd':
            path.write_bytes(path.read_bytes()[:10])  # truncated, as by a crash or a full disk
    resumed = fit(config, workdir, show_progress=False)
    assert list((workdir / 'damaged_checkpoints').iterdir())  # kept, not deleted
    assert resumed.summary['final_step'] == 57 and same_params(resumed.state.params, straight.state.params)
    # Steps 39-57 were trained again from step 38: the final parameters are those of the run never damaged.
    assert same_params(load_run(workdir, 'latest').state.to_checkpoint(), load_run(straight.workdir, 'latest').state.to_checkpoint())
    # Every checkpoint damaged: an error, never a silent restart from scratch.
    for path in (workdir / 'checkpoints').rglob('*'):
        if path.is_file() and path.parent.name == 'd':
            path.write_bytes(b'')
    with pytest.raises(CheckpointError, match='is damaged, so this run cannot resume'):
        fit(config, workdir, show_progress=False)


def test_a_second_run_on_a_live_workdir_is_refused_and_a_dead_ones_lock_is_taken_over(make_config, tmp_path):
    workdir = tmp_path / 'run'
    workdir.mkdir()
    holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    lock = workdir / '.jaxdl.lock'
    import socket
    lock.write_text(json.dumps({'pid': holder.pid, 'host': socket.gethostname(), 'since': 'earlier'}))
    try:
        with pytest.raises(WorkdirError, match=f'in use by another jaxdl run \\(pid {holder.pid}'):
            fit(make_config(train__duration='1 epoch'), workdir, show_progress=False)
        assert not (workdir / 'config.json').exists()
    finally:
        holder.kill()
        holder.wait()
    result = fit(make_config(train__duration='1 epoch'), workdir, show_progress=False)  # the holder is dead
    assert result.summary['stop_reason'] == 'completed' and not lock.exists()


def test_an_unwritable_or_full_workdir_fails_before_training(make_config, tmp_path, monkeypatch):
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a directory')
    with pytest.raises(WorkdirError, match='cannot write to the workdir'):
        fit(make_config(), blocker / 'run', show_progress=False)
    import shutil as shutil_module
    usage = shutil_module.disk_usage(tmp_path)
    monkeypatch.setattr(shutil_module, 'disk_usage', lambda path: usage._replace(free=1000))
    with pytest.raises(WorkdirError, match='MiB free, but checkpoints of this run need about'):
        fit(make_config(), tmp_path / 'full', show_progress=False)
    assert not (tmp_path / 'full' / 'checkpoints').exists()


def test_a_failed_save_keeps_the_previous_checkpoint_and_says_so(make_config, tmp_path, monkeypatch):
    import errno
    import orbax.checkpoint as ocp
    real_save, calls = ocp.CheckpointManager.save, []

    def save_until_the_disk_fills(self, step, *args, **kwargs):
        calls.append(step)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real_save(self, step, *args, **kwargs)
    monkeypatch.setattr(ocp.CheckpointManager, 'save', save_until_the_disk_fills)
    with pytest.raises(WorkdirError, match=r'step 38 .* failed \(No space left on device\); the earlier checkpoints '
                                           r'\[19\] are untouched'):
        fit(make_config(train__duration='3 epochs'), tmp_path / 'run', show_progress=False)
    monkeypatch.undo()
    assert Checkpoints(tmp_path / 'run' / 'checkpoints', read_only=True).all_steps() == [19]
    assert int(load_run(tmp_path / 'run', 'latest').state.step) == 19
