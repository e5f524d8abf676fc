"""flax.linen models, each a backbone and a head so transfer learning can swap heads.

Every model is called as `model.apply(variables, images, train=..., axis_name=...)`; `axis_name` is the pmap
axis BatchNorm reduces its batch statistics over, so a pmapped step normalises over the global batch, exactly
as a single device would.

The task chooses the head (`task.head_options`): a dense layer on a feature vector (classification, regression),
per-pixel scores (segmentation) or a CenterNet heatmap and boxes (detection). The last two decode the U-Net
encoder's feature maps, so they need `model.name='unet'`.
"""
from jaxdl.models.backbone_head import BackboneAndHead, DenseHead
from jaxdl.models.cnn import SmallCNN
from jaxdl.models.resnet import ResNet
from jaxdl.models.unet import CenterNetHead, PixelHead, UNetEncoder

BACKBONES = {'cnn': SmallCNN, 'resnet': ResNet, 'unet': UNetEncoder}
MODELS = tuple(BACKBONES)
WITH_BATCH_NORM = ('resnet', 'unet')
# Which backbones each head can read: a feature vector, or the U-Net encoder's map per level.
HEAD_BACKBONES = {'dense': ('cnn', 'resnet'), 'pixels': ('unet',), 'centernet': ('unet',)}


def build_model(model_cfg, num_outputs: int, head: str = 'dense', output_stride: int = 1) -> BackboneAndHead:
    """The model named by config, with a `head` of `num_outputs` units (classes, targets or heatmap channels)."""
    import jax.numpy as jnp
    dtype = jnp.dtype(model_cfg.dtype)
    if model_cfg.name not in HEAD_BACKBONES[head]:
        raise ValueError(f'model {model_cfg.name!r} cannot feed a {head!r} head; use one of '
                         f'{", ".join(HEAD_BACKBONES[head])}')
    options = dict(model_cfg[model_cfg.name].to_dict(), dtype=dtype)
    options.pop('head_width', None)  # the detection head's, not the encoder's
    if model_cfg.name in WITH_BATCH_NORM:
        options['freeze_batch_norm'] = model_cfg.freeze_batch_norm
    backbone = BACKBONES[model_cfg.name](**options)
    if head == 'dense':
        return BackboneAndHead(backbone=backbone, head=DenseHead(num_outputs=num_outputs, dtype=dtype))
    decoder = dict(features=tuple(model_cfg.unet.features), dtype=dtype, freeze_batch_norm=model_cfg.freeze_batch_norm)
    if head == 'pixels':
        return BackboneAndHead(backbone=backbone, head=PixelHead(num_outputs=num_outputs, **decoder))
    return BackboneAndHead(backbone=backbone, head=CenterNetHead(num_classes=num_outputs, output_stride=output_stride,
                                                                 width=model_cfg.unet.head_width, **decoder))
