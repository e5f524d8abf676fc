"""A torchvision ResNet's weights file as a run's transfer.init_from: the state fit() starts from holds the file's
backbone and a fresh head. (The mapping itself: tests/test_imported_weights.py; a source that does not fit stops
before any step: tests/test_transfer.py.)"""
import jax
import numpy as np

from conftest import ROOT
from torch_networks import randomize, save, torchvision


def test_an_imported_resnet_is_the_starting_state_of_the_fine_tuning_experiment(tmp_path):
    from jaxdl.config import Plan, apply_updates, load_config_file
    from jaxdl.tasks import build_task
    from jaxdl.train.state import state_from_config
    from jaxdl.transfer import initialize_from
    network = randomize(torchvision.models.resnet18())
    weights = save(network, tmp_path / 'resnet18.safetensors')
    config = apply_updates(load_config_file(str(ROOT / 'jaxdl' / 'experiments' / 'finetune_imported_resnet.py')),
                           {'transfer.init_from': str(weights)})
    state, _ = state_from_config(config, build_task(config.task, 5), image_shape=(32, 32, 3),
                                 plan=Plan.resolve(config, 2))
    started, report = initialize_from(state, config.transfer, config.model)
    assert report.source == str(weights) and len(report.loaded) == 100  # 20 convolutions, 20 BatchNorms x 4
    assert report.reinitialized == ['params/head/Dense_0/bias', 'params/head/Dense_0/kernel']
    np.testing.assert_array_equal(started.params['backbone']['Conv_0']['kernel'],
                                  network.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(started.model_state['batch_stats']['backbone']['BatchNorm_0']['mean'],
                                  network.bn1.running_mean.numpy())
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(started.params['head']),
                                                    jax.tree.leaves(state.params['head'])))
