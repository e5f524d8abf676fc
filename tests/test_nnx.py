"""Flax NNX models: an nnx.Module class named by import path trains through fit(), the CLI, checkpoints, exact
resume, rerun, transfer and every placement, and computes what the linen version of the same network computes."""
import copy
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.config import ConfigError, apply_updates, load_config_file
from jaxdl.data.pipeline import Pipeline
from jaxdl.models import build_model
from jaxdl.runs import load_run
from jaxdl.tasks import build_task
from jaxdl.train.loop import fit
from conftest import ROOT, jaxdl, run

CUSTOM = ROOT / 'experiments' / 'custom'
EXPERIMENT = CUSTOM / 'vit_digits_nnx.py'
SMALL = ['--config.model.options.width=16', '--config.model.options.depth=1', '--config.model.options.heads=2',
         "--config.train.duration='2 epochs'", '--config.train.eval_batch_size=128', '--no-progress']
# linen's automatic names -> the NNX version's attribute names (the same layers otherwise)
LINEN_TO_NNX = {'LayerNorm_0': 'norm1', 'MultiHeadDotProductAttention_0': 'attention', 'LayerNorm_1': 'norm2',
                'Dense_0': 'mlp_in', 'Dense_1': 'mlp_out'}


@pytest.fixture
def custom_code(monkeypatch):
    monkeypatch.syspath_prepend(str(CUSTOM))


def as_nnx_names(params):
    renamed = {}
    for name, value in params.items():
        if name.startswith('block_'):
            renamed[name] = {LINEN_TO_NNX[k]: v for k, v in value.items()}
        else:
            renamed['norm' if name == 'LayerNorm_0' else name] = value
    return renamed


def test_the_nnx_and_linen_versions_give_the_same_loss_for_the_same_weights(custom_code):
    config = load_config_file(str(EXPERIMENT))
    linen_config = apply_updates(copy.deepcopy(config), {'model.name': 'tiny_vit:TinyViT'})
    task = build_task(config.task, 10)
    batch = next(Pipeline.for_config(config).eval_batches('validation', 64))
    linen = build_model(linen_config.model, 10, task.head_options)
    nnx_model = build_model(config.model, 10, task.head_options, image_shape=(8, 8, 1))
    init = lambda model, seed: model.init({'params': jax.random.key(seed), 'dropout': jax.random.key(seed)},
                                          jnp.zeros((1, 8, 8, 1)))['params']
    params, nnx_params = init(linen, 3), init(nnx_model, 4)
    assert jax.tree.structure(as_nnx_names(params)) == jax.tree.structure(nnx_params)
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(as_nnx_names(params)), jax.tree.leaves(nnx_params)))
    loss = lambda model, p: task.per_example_loss(model.apply({'params': p}, batch['image'], train=False), batch)
    expected, got = loss(linen, params), loss(nnx_model, as_nnx_names(params))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(loss(nnx_model, nnx_params) - expected))) > 1e-3  # other weights: another loss


@pytest.mark.slow
def test_an_nnx_model_trains_through_the_cli_resumes_exactly_reruns_and_transfers(custom_code, tmp_path):
    workdir = tmp_path / 'nnx'
    killed = jaxdl('train', EXPERIMENT, '--workdir', workdir, *SMALL, env={'JAXDL_KILL_AT': 'saved@19'})
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = jaxdl('train', EXPERIMENT, '--workdir', workdir, *SMALL)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert 'resuming' in resumed.stderr and 'from step 19' in resumed.stderr
    summary = json.loads((workdir / 'summary.json').read_text())
    assert summary['final_step'] == 38 and summary['test']['accuracy'] > 0.18  # chance: 0.1 (2 epochs, all in warmup)
    rerun = jaxdl('rerun', workdir, '--workdir', tmp_path / 'again', '--no-progress', '--trust-code')
    assert rerun.returncode == 0 and json.loads(rerun.stdout)['match'], rerun.stderr[-2000:]
    assert 'patches' in load_run(workdir).state.params and 'block_0' in load_run(workdir).state.params

    config = apply_updates(load_config_file(str(EXPERIMENT)), {
        'model.options.width': 16, 'model.options.depth': 1, 'model.options.heads': 2, 'dataset.classes': (0, 1, 2),
        'train.duration': '1 epoch', 'transfer.init_from': str(workdir)})
    fit(config, tmp_path / 'fine_tuned', show_progress=False)
    transfer = json.loads((tmp_path / 'fine_tuned' / 'environment.json').read_text())['transfer']
    assert transfer['reinitialized'] == ['params/head/bias', 'params/head/kernel']
    assert transfer['loaded'] == len(jax.tree.leaves(load_run(workdir).state.to_checkpoint()['params'])) - 2 + len(
        jax.tree.leaves(load_run(workdir).state.model_state))


@pytest.mark.slow
def test_an_nnx_model_trains_alike_under_jit_pmap_sharded_and_fsdp(tmp_path):
    result = run([sys.executable, str(ROOT / 'tests' / 'multidevice_worker.py'), 'nnx', str(tmp_path)], devices=2)
    assert result.returncode == 0, result.stderr[-3000:]
    reference = jax.tree.leaves(load_run(tmp_path / 'jit', 'latest', trust_code=True).state.params)
    floor = 1e-5 * max(float(np.max(np.abs(x))) for x in reference)
    for kind in ('pmap', 'sharded', 'fsdp'):  # pmap passes BatchNorm's axis_name: only to a __call__ taking it
        assert json.loads((tmp_path / kind / 'environment.json').read_text())['parallel'] == kind
        params = jax.tree.leaves(load_run(tmp_path / kind, 'latest', trust_code=True).state.params)
        for a, b in zip(params, reference, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=floor)


def test_an_nnx_class_without_rngs_or_with_a_wrong_option_is_one_clear_error(custom_code, make_config):
    config = load_config_file(str(EXPERIMENT))
    with pytest.raises(ConfigError, match="'depthh' is not an option of 'tiny_vit_nnx:TinyViT'; its options: depth, dropout, heads, patch, pool, width"):
        build_model(apply_updates(config, {'model.options.depthh': 2}).model, 10, image_shape=(8, 8, 1))
    with pytest.raises(ConfigError, match='takes no `rngs`'):
        build_model(make_config(model__name='test_nnx:NoRngs').model, 10)


from flax import nnx  # noqa: E402  (the class below is a test subject)


class NoRngs(nnx.Module):
    def __init__(self, num_outputs):
        self.num_outputs = num_outputs

    def __call__(self, images, *, train=False):
        return images.reshape(images.shape[0], -1)[:, :self.num_outputs]
