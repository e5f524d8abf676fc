"""A TensorFlow SavedModel through jax2tf: the model's StableHLO inside a TF graph, the weights as TF variables,
and a `serving_default` signature (TF Serving's convention) from uint8 `images` to the named outputs.

    model = tf.saved_model.load('saved_model')
    outputs = model.signatures['serving_default'](images=tf.constant(images))
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from jaxdl.errors import ConfigError
from jaxdl.export.serving import Serving
from jaxdl.export.stablehlo import PLATFORMS

FOLDER = 'saved_model'


def write(serving: Serving, batch: int | None, output: Path) -> dict:
    import tensorflow as tf
    from jax.experimental import jax2tf

    height, width, channels = serving.image_shape
    apply = jax2tf.convert(
        serving.apply,
        polymorphic_shapes=[None, None if batch else '(b, ...)'],
        native_serialization_platforms=PLATFORMS,
        with_gradient=False,
    )
    module = tf.Module()
    module.model_weights = tf.nest.map_structure(
        lambda w: tf.Variable(w, trainable=False), jax.tree.map(np.asarray, serving.params)
    )

    @tf.function(
        input_signature=[tf.TensorSpec([batch, height, width, channels], tf.uint8, name='images')], autograph=False
    )
    def serve(images):
        return apply(module.model_weights, images)

    module.serve = serve
    tf.saved_model.save(module, str(output / FOLDER), signatures={'serving_default': serve})
    return {
        'file': FOLDER,
        'signature': 'serving_default',
        'load': "tf.saved_model.load(path).signatures['serving_default'](images=images)",
    }


def load(output: Path) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    import tensorflow as tf

    serve = tf.saved_model.load(str(output / FOLDER)).signatures['serving_default']

    def call(images: np.ndarray) -> dict[str, np.ndarray]:
        try:
            return {name: value.numpy() for name, value in serve(images=tf.constant(images)).items()}
        except tf.errors.InvalidArgumentError as e:
            if 'failed to deserialize portable artifact' not in str(e):
                raise
            # jax serializes for readers at most a few weeks older than itself; a TensorFlow older than that
            # still reads a fixed batch, whose program has no shape checks
            raise ConfigError(
                f'--format savedmodel: TensorFlow {tf.__version__} cannot read the shape checks that jax '
                f'{jax.__version__} writes for a dynamic batch; export a fixed batch size with --batch N, or install '
                f'a TensorFlow released after this jax'
            ) from None

    return call
