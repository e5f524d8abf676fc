"""flax.linen models, each a backbone and a head so transfer learning can swap heads.

Every model is called as `model.apply(variables, images, train=..., axis_name=...)`; `axis_name` is the pmap
axis BatchNorm reduces its batch statistics over, so a pmapped step normalises over the global batch, exactly
as a single device would.
"""
from jaxdl.models.backbone_head import BackboneAndHead, DenseHead
from jaxdl.models.cnn import SmallCNN
from jaxdl.models.resnet import ResNet

BACKBONES = {'cnn': SmallCNN, 'resnet': ResNet}
MODELS = tuple(BACKBONES)
WITH_BATCH_NORM = ('resnet',)


def build_model(model_cfg, num_outputs: int) -> BackboneAndHead:
    """The model named by config, with a head of `num_outputs` units."""
    import jax.numpy as jnp
    dtype = jnp.dtype(model_cfg.dtype)
    options = dict(model_cfg[model_cfg.name].to_dict(), dtype=dtype)
    if model_cfg.name in WITH_BATCH_NORM:
        options['freeze_batch_norm'] = model_cfg.freeze_batch_norm
    backbone = BACKBONES[model_cfg.name](**options)
    return BackboneAndHead(backbone=backbone, head=DenseHead(num_outputs=num_outputs, dtype=dtype))
