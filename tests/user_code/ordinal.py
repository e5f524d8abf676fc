"""A researcher's own task, in a file of its own and without a jaxdl import: ordinal regression of class labels
(the digits 0 < 1 < ... < 9 as ranks), with the cumulative-link loss of Frank & Hall (2001): output k is the logit
of "rank > k", so the model has K - 1 outputs and mistakes cost more the further they are off.

It reads the classification data contract (`label` int32 [B]) and keeps jaxdl's Task protocol: per-example
loss, metric sums over valid rows, one division in `summarize`."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class OrdinalRegression:
    num_classes: int
    class_names: tuple = ()
    margin_weight: float = 1.0   # an option of this task (task.options.margin_weight)

    data_kind = 'classification'
    head_options = {'head': 'dense'}
    headline = ('loss', 'mean_abs_rank_error', 'accuracy')

    @property
    def num_outputs(self) -> int:
        return self.num_classes - 1

    def check_outputs(self, outputs, image_shape, model):
        if outputs.shape != (2, self.num_outputs):
            raise ValueError(f'{model} outputs {outputs.shape}; ordinal regression needs [batch, {self.num_outputs}]')

    def per_example_loss(self, outputs, batch):
        above = (batch['label'][:, None] > jnp.arange(self.num_outputs)[None]).astype(jnp.float32)
        losses = -(above * jax.nn.log_sigmoid(outputs) + (1 - above) * jax.nn.log_sigmoid(-outputs))
        return self.margin_weight * jnp.sum(losses, axis=-1)

    def predict(self, outputs):
        return jnp.sum(jax.nn.sigmoid(outputs) > 0.5, axis=-1)  # the predicted rank

    def train_metric_sums(self, outputs, batch, per_example_loss):
        valid = batch['valid'].astype(jnp.float32)
        error = jnp.abs(self.predict(outputs) - batch['label']).astype(jnp.float32)
        return {'loss_sum': jnp.sum(per_example_loss * valid), 'abs_error_sum': jnp.sum(error * valid),
                'correct': jnp.sum((error == 0) * valid), 'count': jnp.sum(valid)}

    def eval_metric_sums(self, outputs, batch, per_example_loss):
        return self.train_metric_sums(outputs, batch, per_example_loss)

    def eval_predictions(self, outputs, batch):
        return {}

    def summarize(self, sums, predictions=None):
        sums = {k: float(np.asarray(v)) for k, v in sums.items()}
        count = max(sums['count'], 1.0)
        return {'loss': sums['loss_sum'] / count, 'mean_abs_rank_error': sums['abs_error_sum'] / count,
                'accuracy': sums['correct'] / count, 'count': int(sums['count'])}
