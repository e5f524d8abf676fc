"""A run killed on one device count resumes on another (DESIGN invariant 2): orbax restores the checkpoint into
the new placement and the data resumes at the same global batch. Apart from tests/test_resume.py's kills so that
pytest-xdist runs the two modules side by side."""
import json
import signal

import jax
import numpy as np
import pytest

from jaxdl.config import load_config_file
from jaxdl.logging import read_jsonl
from jaxdl.runs import load_run
from jaxdl.train.loop import fit
from conftest import ROOT

SMALL = ROOT / 'tests' / 'small_experiment.py'
# 25 steps: long enough to cross a checkpoint, a validation and the resume; short enough that this small net's SGD
# does not yet amplify the 1e-7 reduction-order differences of another device count (tests/test_parallel.py).
SHORT = {'train.duration': '25 steps', 'train.checkpoint_every': '5 steps', 'train.validate_every': '10 steps'}


@pytest.fixture(scope='module')
def one_device_run(tmp_path_factory):
    from jaxdl.config import apply_updates
    config = apply_updates(load_config_file(str(SMALL)), {**SHORT, 'train.parallel': 'jit'})
    return fit(config, tmp_path_factory.mktemp('devices') / 'one', show_progress=False).workdir


def assert_close_to(workdir, reference):
    """The same run within the parallel tests' tolerance: parameters (rtol 1e-5 over an absolute floor of 1e-5
    of the largest parameter), the same selection, and the same records with losses within 1e-4."""
    a, b = load_run(workdir, 'latest'), load_run(reference, 'latest')
    assert a.step == b.step == 25
    floor = 1e-5 * max(float(np.max(np.abs(x))) for x in jax.tree.leaves(b.state.params))
    for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=floor)
    summary = lambda w: json.loads((w / 'summary.json').read_text())
    assert summary(workdir)['selected_step'] == summary(reference)['selected_step']
    records = lambda w: read_jsonl(w / 'metrics.jsonl')
    for r, s in zip(records(workdir), records(reference), strict=True):
        assert (r['step'], r['split'], r['count']) == (s['step'], s['split'], s['count'])
        assert r['loss'] == pytest.approx(s['loss'], rel=1e-4)


@pytest.mark.parametrize('first, then, parallel', [  # the fsdp case in the quick suite: a split state restored whole
    pytest.param(1, 8, 'auto', id='1-to-8-devices', marks=pytest.mark.slow),
    pytest.param(8, 1, 'auto', id='8-to-1-device', marks=pytest.mark.slow),
    pytest.param(8, 1, 'fsdp', id='fsdp-mesh-of-8-to-1-device')])
def test_a_run_resumes_on_another_device_count(first, then, parallel, one_device_run, tmp_path):
    """Orbax restores the checkpoint into the new placement (replicated over 8 devices, split over an fsdp mesh of
    8, or on one) and the data resumes at the same global batch: the run ends where one never moved does, within
    float tolerance. The placement is all that may change between a run and its resume."""
    from conftest import jaxdl
    from jaxdl.config import apply_updates
    workdir = tmp_path / 'moved'
    overrides = [f'--config.{k}={v}' for k, v in SHORT.items()]
    killed = jaxdl('train', SMALL, '--workdir', workdir, '--no-progress', *overrides,
                   f'--config.train.parallel={parallel}', devices=first, env={'JAXDL_KILL_AT': 'saved@10'})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    if then == 1:
        fit(apply_updates(load_config_file(str(SMALL)), SHORT), workdir, show_progress=False)
    else:
        resumed = jaxdl('train', SMALL, '--workdir', workdir, '--no-progress', *overrides, devices=then)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert 'resuming' in resumed.stderr and 'from step 10' in resumed.stderr
    assert len(json.loads((workdir / 'environment.json').read_text())['devices']) == then
    assert_close_to(workdir, one_device_run)
