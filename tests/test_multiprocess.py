"""Two cooperating processes on jax.distributed (127.0.0.1, CPU, gloo) end where one process does."""
import json
import signal
import sys

import jax
import numpy as np
import pytest

from jaxdl.runs import load_run
from jaxdl.logging import TIMING_KEYS, read_jsonl
from jaxdl.train.loop import fit
from conftest import ROOT, free_port, run_job

EXPERIMENT = ROOT / 'tests' / 'small_experiment.py'


# Mixup and CutMix are drawn for the global batch: two processes mix the same pairs as one.
MIXING = ('--config.dataset.augment.mixup_alpha=0.8', '--config.dataset.augment.cutmix_alpha=1.0')


def test_two_processes_match_one_and_count_every_example_once(tmp_path, make_config):
    workdir = tmp_path / 'two'
    port = free_port()
    outputs = run_job([
        [sys.executable, '-m', 'jaxdl', 'train', str(EXPERIMENT), '--workdir', str(workdir), '--no-progress',
         '--config.train.duration=1 epoch', *MIXING, '--coordinator', f'127.0.0.1:{port}', '--num-processes', '2',
         '--process-id', str(i)] for i in range(2)])
    for code, _, err in outputs:
        assert code == 0, err[-3000:]
    one = fit(make_config(train__duration='1 epoch', dataset__augment__mixup_alpha=0.8,
                          dataset__augment__cutmix_alpha=1.0), tmp_path / 'one', show_progress=False)
    environment = json.loads((workdir / 'environment.json').read_text())
    assert environment['process_count'] == 2 and len(environment['devices']) == 2
    # The test split (359) does not divide by 2: each process evaluates its own share, every example once.
    for _, out, _ in outputs:
        result = out[out.index('\n{') + 1:] if not out.startswith('{') else out  # gloo's C++ prints a line first
        assert json.loads(result)['test']['count'] == 359
    two = load_run(workdir, 'latest').state
    for a, b in zip(jax.tree.leaves(two.params), jax.tree.leaves(load_run(one.workdir, 'latest').state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    strip = lambda path: [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_jsonl(path)]
    for a, b in zip(strip(workdir / 'metrics.jsonl'), strip(one.workdir / 'metrics.jsonl'), strict=True):
        assert a.keys() == b.keys() and a['step'] == b['step'] and a['count'] == b['count']
        assert np.isclose(a['loss'], b['loss'], rtol=1e-4)
    assert not (workdir / '.jaxdl.lock').exists()


def test_incomplete_distributed_settings_are_refused(capsys):
    from jaxdl.cli import main
    assert main(['train', str(EXPERIMENT), '--coordinator', '127.0.0.1:1234', '--process-id', '0']) == 2
    assert 'missing: num_processes' in capsys.readouterr().err


@pytest.mark.slow  # two processes matching one stays in the quick suite
def test_a_two_process_run_resumes_as_one_process(tmp_path, make_config):
    """Both processes stop at the same checkpoint (SIGKILL once it has committed); one process resumes it and
    ends where a run of one process never stopped does: the global batches do not depend on the process count."""
    workdir, port = tmp_path / 'two_then_one', free_port()
    short = {'train__duration': '25 steps', 'train__checkpoint_every': '5 steps', 'train__validate_every': '10 steps'}
    # Each process SIGKILLs itself once the save of step 10 has committed (run_job kills one left waiting on the
    # other, as a scheduler would: the checkpoint the run resumes from is the last one committed either way).
    outputs = run_job([
        [sys.executable, '-m', 'jaxdl', 'train', str(EXPERIMENT), '--workdir', str(workdir), '--no-progress',
         *[f'--config.{k.replace("__", ".")}={v}' for k, v in short.items()], '--coordinator', f'127.0.0.1:{port}',
         '--num-processes', '2', '--process-id', str(i)] for i in range(2)], env={'JAXDL_KILL_AT': 'saved@10'})
    for code, _, err in outputs:
        assert code == -signal.SIGKILL, err[-3000:]
    resumed = fit(make_config(**short), workdir, show_progress=False)
    one = fit(make_config(**short), tmp_path / 'one', show_progress=False)
    assert resumed.summary['final_step'] == 25 and resumed.summary['selected_step'] == one.summary['selected_step']
    assert json.loads((workdir / 'environment.json').read_text())['process_count'] == 1
    for a, b in zip(jax.tree.leaves(load_run(workdir, 'latest').state.params),
                    jax.tree.leaves(load_run(one.workdir, 'latest').state.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
