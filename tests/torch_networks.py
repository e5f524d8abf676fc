"""torch, torchvision and timm for the weight-import tests, and the networks they build: random weights made
here (nothing is downloaded), saved as a torch user saves them, compared with the imported jaxdl model."""
import sys
from pathlib import Path

import numpy as np
import pytest

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
