"""Weights imported from torchvision and timm: every listed architecture, made here with random weights (no
download), saved as safetensors or .pth, imported, and compared with the source network on the same images."""
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxdl.errors import TransferError
from jaxdl.transfer import import_weights

# torchvision and timm import triton (the CUDA build of torch brings it), whose LLVM clashes with TensorFlow's: in
# a process that imported TensorFlow first (a pytest worker that collected the other modules) the import is a
# segmentation fault (`python -c "import tensorflow; import torchvision"` exits 139). Nothing here compiles with
# triton, so it is left unimportable; torch then runs without it.
sys.modules.setdefault('triton', None)

if sys.version_info < (3, 12):  # the dev extra installs torch, torchvision and timm here: a missing one is a failure
    import timm
    import torch
    import torchvision
else:  # on newer Pythons the registry's torch is a several-GB CUDA build, so the dev extra leaves it out
    torch = pytest.importorskip('torch')
    torchvision = pytest.importorskip('torchvision')
    timm = pytest.importorskip('timm')

from safetensors.torch import save_file  # noqa: E402


def randomize(network, seed=0):
    """Every norm and bias away from its constant init (and BatchNorm's running statistics away from 0 and 1),
    so a swapped or untransposed tensor shows in the logits."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if tensor.dtype != torch.float32:
                continue
            if name.endswith('running_var') or ((name.endswith('.weight') and tensor.ndim == 1)):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif tensor.ndim == 1 or name.endswith('running_mean') or name in ('cls_token', 'pos_embed'):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
    return network.eval()


def compare(network, path, model_cfg, size=224):
    images = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    with torch.no_grad():
        expected = network(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    module, variables = import_weights(str(path), model_cfg)
    got = np.asarray(module.apply(variables, images, train=False))
    assert got.shape == expected.shape
    error = np.max(np.abs(got - expected)) / np.max(np.abs(expected))
    assert error < 1e-4, f'largest difference {error:.2e} of the largest logit'
    return module, variables


def save(network, path: Path):
    if path.suffix == '.safetensors':
        save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(path))
    else:
        torch.save(network.state_dict(), path)
    return path


RESNETS = [('torchvision', 18), ('torchvision', 34), ('torchvision', 50), ('timm', 18), ('timm', 34),
           pytest.param('timm', 50, marks=pytest.mark.slow)]


@pytest.mark.parametrize('library,depth', RESNETS)
def test_a_resnet_gives_the_source_networks_logits(library, depth, tmp_path):
    network = (getattr(torchvision.models, f'resnet{depth}')(num_classes=7) if library == 'torchvision'
               else timm.create_model(f'resnet{depth}', pretrained=False, num_classes=7))
    randomize(network, depth)
    path = save(network, tmp_path / ('resnet.safetensors' if depth != 34 else 'resnet.pth'))
    compare(network, path, {'name': 'resnet', 'options': {'depth': depth}}, size=96)


@pytest.mark.parametrize('size', ['tiny', 'small', pytest.param('base', marks=pytest.mark.slow)])
def test_a_timm_vit_gives_the_source_networks_logits(size, tmp_path):
    network = randomize(timm.create_model(f'vit_{size}_patch16_224', pretrained=False, num_classes=5))
    path = save(network, tmp_path / 'vit.safetensors')
    module, variables = compare(network, path, {'name': 'vit', 'options': {'size': size}})
    # At another image size the position embedding is resized, as timm resizes it for the same weights.
    resized = timm.create_model(f'vit_{size}_patch16_224', pretrained=False, num_classes=5, img_size=128)
    resized.load_state_dict({**network.state_dict(), 'pos_embed': resized.state_dict()['pos_embed']})
    module, variables = import_weights(str(path), {'name': 'vit', 'options': {'size': size}}, image_size=128)
    assert variables['params']['backbone']['position_embedding'].shape == (1, 1 + 8 * 8, network.embed_dim)


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
