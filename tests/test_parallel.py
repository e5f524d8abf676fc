"""pmap and sharded (jit over a mesh) training on 8 CPU devices equal single-device training."""
import json
import sys

import pytest

from conftest import ROOT, run


@pytest.mark.parametrize('model', ['cnn', 'resnet'])
def test_pmap_and_sharded_match_single_device(model):
    result = run([sys.executable, str(ROOT / 'tests' / 'multidevice_worker.py'), model], devices=8)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.split('RESULT ', 1)[1])
    assert out['devices'] == 8 and out['pmap_num_devices'] == 8 and out['sharded_num_devices'] == 8
    assert out['params_moved']
    for kind in ('pmap', 'sharded'):
        assert out[f'{kind}_steps'] == 5
        assert out[f'{kind}_params_allclose'], f'{kind} params differ from single-device training (rtol 1e-5)'
        assert out[f'{kind}_model_state_allclose'], f'{kind} BatchNorm statistics differ'
    for kind in ('jit', 'pmap', 'sharded'):
        assert out[f'{kind}_eval_count'] == 359  # every test example once, padding ignored
    assert out['pmap_eval_loss'] == pytest.approx(out['jit_eval_loss'], rel=1e-5)
    assert out['sharded_eval_loss'] == pytest.approx(out['jit_eval_loss'], rel=1e-5)
