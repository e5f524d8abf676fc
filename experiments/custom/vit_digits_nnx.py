"""Your own Flax NNX model through `jaxdl train`: the TinyViT of tiny_vit_nnx.py (beside this file) on the offline
`digits`, with every setting of vit_digits.py (which trains the linen version).

    jaxdl train experiments/custom/vit_digits_nnx.py
    jaxdl evaluate runs/vit_digits_nnx    # from any directory: the run records where tiny_vit_nnx.py lives

`model.name` names the nnx.Module class by import path, as for a linen one; `model.options` are its constructor's
keyword arguments (a wrong one is an error naming it and listing the valid ones).
"""
from vit_digits import get_config as linen_config


def get_config():
    config = linen_config()
    config.model.name = 'tiny_vit_nnx:TinyViT'
    return config
