"""An imported torchvision ResNet fine-tunes through the CLI (experiments/finetune_imported_resnet.py). A file of
another depth is refused by the same mapping (tests/test_imported_weights.py) before any step, as every source
that does not fit is (tests/test_transfer.py). A module of its own, so that pytest-xdist runs it beside the parity
tests."""
import json

from conftest import ROOT, jaxdl
from torch_networks import randomize, save, torchvision


def test_an_imported_resnet_fine_tunes_through_the_cli(tmp_path):
    weights = save(randomize(torchvision.models.resnet18()), tmp_path / 'resnet18.safetensors')
    quick = ['--config.train.duration=2 steps', '--config.train.validate_every=2 steps',
             '--config.train.checkpoint_every=2 steps', '--config.transfer.compare_with_scratch=False',
             '--config.dataset.image_size=32', '--config.train.eval_batch_size=250']
    experiment = ROOT / 'experiments' / 'finetune_imported_resnet.py'
    result = jaxdl('train', experiment, '--workdir', tmp_path / 'run', f'--config.transfer.init_from={weights}',
                   '--no-progress', *quick, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / 'run' / 'environment.json').read_text())['transfer']
    assert record['source'] == str(weights) and record['loaded'] == 100  # 20 convolutions, 20 BatchNorms x 4
    assert record['reinitialized'] == ['params/head/Dense_0/bias', 'params/head/Dense_0/kernel']
    assert record['unused_in_source'] == []  # the ImageNet classifier maps onto the head, which starts fresh
