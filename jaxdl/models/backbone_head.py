"""Composition of a feature extractor (backbone) and a task head; params are {'backbone': ..., 'head': ...}."""
import flax.linen as nn
import jax.numpy as jnp


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
