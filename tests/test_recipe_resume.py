"""A run with every recipe piece on (tests/recipe_experiment.py), killed (SIGKILL) and resumed, ends as the run
never stopped: bit for bit on the same device; to float tolerance after an fsdp run on 8 devices moves to one."""
import signal

import jax
import numpy as np
import pytest
from conftest import ROOT, jaxdl
from test_resume import assert_same_outcome, outcome

from jaxdl.config import load_config_file
from jaxdl.train.loop import fit

EXPERIMENT = ROOT / 'tests' / 'recipe_experiment.py'


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    result = fit(load_config_file(str(EXPERIMENT)), tmp_path_factory.mktemp('recipe') / 'straight', show_progress=False)
    assert result.summary['final_step'] == 25 and 'test_ema' in result.summary
    return result.workdir


@pytest.mark.slow  # in the quick suite: the EMA's resume (test_ema.py), the augmentations' (test_data.py)
def test_killed_with_every_recipe_piece_on_the_same_command_ends_as_a_run_never_stopped(uninterrupted, tmp_path):
    workdir = tmp_path / 'killed'
    # Between checkpoints (10 saved, 15 not yet): the resumed run redraws steps 11-13's flips, RandAugment ops,
    # Mixup/CutMix and drop paths and moves the EMA again (every kind of kill point: test_resume.py).
    killed = jaxdl('train', EXPERIMENT, '--workdir', workdir, '--no-progress', env={'JAXDL_KILL_AT': 'step@13'})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    fit(load_config_file(str(EXPERIMENT)), workdir, show_progress=False)
    assert_same_outcome(outcome(workdir), outcome(uninterrupted))


@pytest.mark.slow
def test_an_fsdp_run_on_8_devices_with_every_recipe_piece_resumes_on_one(uninterrupted, tmp_path):
    from jaxdl.runs import load_run
    workdir = tmp_path / 'moved'
    killed = jaxdl('train', EXPERIMENT, '--workdir', workdir, '--no-progress', '--config.train.parallel=fsdp',
                   '--config.train.fsdp_min_size=64', devices=8, env={'JAXDL_KILL_AT': 'saved@10'})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    fit(load_config_file(str(EXPERIMENT)), workdir, show_progress=False)
    for weights in ('raw', 'ema'):
        a, b = load_run(workdir, 'latest', weights=weights), load_run(uninterrupted, 'latest', weights=weights)
        floor = 1e-5 * max(float(np.max(np.abs(x))) for x in jax.tree.leaves(b.state.params))
        for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=floor, err_msg=weights)
