"""Composition of a feature extractor (backbone) and a task head; params are {'backbone': ..., 'head': ...}.

The task names the head a built-in model ends in (`task.head_options`): a dense layer on a feature vector
(classification, regression), per-pixel scores (segmentation) or a CenterNet heatmap and boxes (detection).
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxdl.errors import ConfigError

# What a backbone hands its head, and which heads read it.
HEADS = {'vector': ('dense',), 'feature_maps': ('pixels', 'centernet', 'dense')}  # unet pools for 'dense'


def check_head(model: str, gives: str, head: str) -> None:
    """A ConfigError when the task's head cannot read what this built-in backbone gives."""
    if head not in HEADS[gives]:
        needs = 'keeps feature maps (unet)' if head not in HEADS['vector'] else 'ends in a feature vector (cnn, resnet)'
        raise ConfigError(
            f"config key 'model.name': the task's head {head!r} needs a model that {needs}; "
            f'{model!r} gives {"a feature vector" if gives == "vector" else "feature maps"}'
        )


class DenseHead(nn.Module):
    """One dense layer from features to the task's outputs: class scores (logits, softmax applied by the
    classification task's predict) or normalised regression targets."""

    num_outputs: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, features, *, train: bool = False, axis_name=None):
        del train, axis_name
        # Logits in float32 whatever the compute dtype: the loss and softmax need the range.
        return nn.Dense(self.num_outputs, dtype=self.dtype)(features).astype(jnp.float32)


class BackboneAndHead(nn.Module):
    backbone: nn.Module
    head: nn.Module

    def __call__(self, images, *, train: bool = False, axis_name=None):
        features = self.backbone(images, train=train, axis_name=axis_name)
        return self.head(features, train=train, axis_name=axis_name)
