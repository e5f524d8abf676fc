"""Weights imported from torchvision and timm: every listed architecture, made here with random weights (no
download), saved as safetensors or .pth, imported, and compared with the source network on the same images."""
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxdl.errors import TransferError
from jaxdl.transfer import import_weights

from torch_networks import compare, randomize, save, timm, torch, torchvision


RESNETS = [('torchvision', 18), ('torchvision', 34), ('torchvision', 50), ('timm', 18), ('timm', 34),
           pytest.param('timm', 50, marks=pytest.mark.slow)]


@pytest.mark.parametrize('library,depth', RESNETS)
def test_a_resnet_gives_the_source_networks_logits(library, depth, tmp_path):
    network = (getattr(torchvision.models, f'resnet{depth}')(num_classes=7) if library == 'torchvision'
               else timm.create_model(f'resnet{depth}', pretrained=False, num_classes=7))
    randomize(network, depth)
    path = save(network, tmp_path / ('resnet.safetensors' if depth != 34 else 'resnet.pth'))
    compare(network, path, {'name': 'resnet', 'options': {'depth': depth}}, size=64)


@pytest.mark.parametrize('size', ['tiny', 'small', pytest.param('base', marks=pytest.mark.slow)])
def test_a_timm_vit_gives_the_source_networks_logits(size, tmp_path):
    # At 64x64 (a 4x4 token grid, timm's img_size) rather than 224: the same weights and mapping, a tenth the work.
    network = randomize(timm.create_model(f'vit_{size}_patch16_224', pretrained=False, num_classes=5, img_size=64))
    path = save(network, tmp_path / 'vit.safetensors')
    compare(network, path, {'name': 'vit', 'options': {'size': size}}, size=64)
    # At another image size the position embedding is resized to the new grid, the class token's row kept.
    module, variables = import_weights(str(path), {'name': 'vit', 'options': {'size': size}}, image_size=96)
    embedding = np.asarray(variables['params']['backbone']['position_embedding'])
    assert embedding.shape == (1, 1 + 6 * 6, network.embed_dim)
    np.testing.assert_array_equal(embedding[0, 0], network.pos_embed.detach().numpy()[0, 0])


def test_a_new_number_of_outputs_gets_a_fresh_head_and_keeps_the_backbone(tmp_path):
    network = randomize(torchvision.models.resnet18(num_classes=7))
    path = save(network, tmp_path / 'r18.safetensors')
    module, variables = import_weights(str(path), {'name': 'resnet', 'options': {'depth': 18}}, num_outputs=3)
    assert variables['params']['head']['Dense_0']['kernel'].shape == (512, 3)
    np.testing.assert_array_equal(variables['params']['backbone']['Conv_0']['kernel'],
                                  network.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(variables['batch_stats']['backbone']['BatchNorm_0']['var'],
                                  network.bn1.running_var.numpy())


def test_the_wrong_architecture_is_named_with_both_shapes_and_a_reinitialize_hint(tmp_path):
    path = save(randomize(torchvision.models.resnet34(num_classes=7)), tmp_path / 'r34.safetensors')
    with pytest.raises(TransferError) as error:
        import_weights(str(path), {'name': 'resnet', 'options': {'depth': 18}})
    text = str(error.value)
    assert 'params/backbone/ResidualBlock_8/Conv_0/kernel (3, 3, 256, 256): in the source, not in the new model' \
        in text
    assert "transfer.reinitialize = (" in text and "'backbone/ResidualBlock_15'" in text
    with pytest.raises(TransferError, match=r'Conv_0/kernel: the new model has \(1, 1, 64, 64\), the source '
                                            r'\(3, 3, 64, 64\)'):
        import_weights(str(path), {'name': 'resnet', 'options': {'depth': 50}})
    vit = save(randomize(timm.create_model('vit_tiny_patch16_224', pretrained=False)), tmp_path / 'vit.safetensors')
    with pytest.raises(TransferError, match=r"not part of a torchvision/timm resnet as jaxdl maps it: blocks.0.*"
                                            r"looks like a timm ViT \(width 192, 12 blocks\): model.name 'vit'"):
        import_weights(str(vit), {'name': 'resnet', 'options': {'depth': 18}})


def test_a_users_model_brings_its_own_torch_name_mapping(tmp_path, monkeypatch):
    """The mapping lives beside the model (TORCH_NAMES in its module): a user's model by import path imports a
    torch network's weights through its own, as resnet and vit do through theirs."""
    network = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 16),
                                  torch.nn.ReLU(), torch.nn.Linear(16, 4))
    path = save(randomize(network), tmp_path / 'mlp.safetensors')
    monkeypatch.syspath_prepend(str(Path(__file__).parent / 'user_code'))
    module, variables = compare(network, path, {'name': 'pooled_mlp:MODEL'}, size=8)
    assert variables['params']['head']['Dense_0']['kernel'].shape == (16, 4)  # the source's head, sized from it


def test_files_that_are_not_state_dicts_are_refused(tmp_path):
    (tmp_path / 'text.safetensors').write_text('not tensors')
    with pytest.raises(TransferError, match='not a readable safetensors file'):
        import_weights(str(tmp_path / 'text.safetensors'), {'name': 'resnet'})
    torch.save([torch.zeros(3)], tmp_path / 'list.pth')
    with pytest.raises(TransferError, match='holds list, not a state dict'):
        import_weights(str(tmp_path / 'list.pth'), {'name': 'resnet'})
    with pytest.raises(TransferError, match="maps onto jaxdl's resnet or vit models, not model.name 'cnn'"):
        import_weights(str(save(torchvision.models.resnet18(), tmp_path / 'r.pth')), {'name': 'cnn'})


class _RunsCode:
    """A pickle that runs code when loaded: what a malicious .pth carries."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / 'code_ran'
    torch.save({'conv1.weight': _RunsCode(marker)}, tmp_path / 'evil.pth')  # a real torch file, code inside
    with pytest.raises(TransferError, match='refused: it is a pickle holding more than tensors'):
        import_weights(str(tmp_path / 'evil.pth'), {'name': 'resnet'})
    assert not marker.exists()
    torch.load(tmp_path / 'evil.pth', weights_only=False)  # what a plain unpickler would have done
    assert marker.exists()


def test_safetensors_need_no_torch_and_a_pth_without_torch_is_refused(tmp_path, monkeypatch):
    network = randomize(torchvision.models.resnet18(num_classes=3))
    safetensors_path = save(network, tmp_path / 'r18.safetensors')
    pth_path = save(network, tmp_path / 'r18.pth')
    monkeypatch.setitem(sys.modules, 'torch', None)  # `import torch` now fails, as where it is not installed
    module, variables = import_weights(str(safetensors_path), {'name': 'resnet', 'options': {'depth': 18}})
    assert variables['params']['head']['Dense_0']['kernel'].shape == (512, 3)
    with pytest.raises(TransferError, match=r'is a pickle \(\.pth\).*torch is not installed.*safetensors'):
        import_weights(str(pth_path), {'name': 'resnet', 'options': {'depth': 18}})
