"""Composition of a feature extractor (backbone) and a task head; params are {'backbone': ..., 'head': ...}."""
import flax.linen as nn
import jax.numpy as jnp


class ClassifierHead(nn.Module):
    """One dense layer from features to class scores (logits); softmax is applied by the task's predict."""
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
