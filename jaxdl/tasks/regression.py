"""Image regression: continuous targets (e.g. a rotation angle in degrees) instead of classes.

The model predicts targets normalised as (t - mean) / std, so the loss sees values of order one whatever the
units; every reported figure (rmse, mae, within_threshold, predictions) is de-normalised back into the targets'
own units. The loss is mean squared error or Huber on the normalised values.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class Regression:
    targets: tuple[str, ...]
    mean: tuple[float, ...]      # one per target, or one for all
    std: tuple[float, ...]
    loss: str = 'mse'            # mse | huber
    huber_delta: float = 1.0
    threshold: float = 10.0      # within_threshold counts predictions this close to the truth (target units)

    head_options = {'head': 'dense'}  # jaxdl.models.build_model: one dense layer on the backbone's features

    @property
    def num_outputs(self) -> int:
        return len(self.targets)

    def _normalise(self, target):
        return (target - jnp.asarray(self.mean, jnp.float32)) / jnp.asarray(self.std, jnp.float32)

    def per_example_loss(self, outputs, batch):
        error = outputs - self._normalise(batch['target'])
        if self.loss == 'huber':
            per_target = optax.huber_loss(error, delta=self.huber_delta)
        else:
            per_target = 0.5 * jnp.square(error)  # 0.5: the gradient is the error itself, as for Huber near 0
        return jnp.sum(per_target, axis=-1)

    def predict(self, outputs):
        """Predictions in the targets' own units (e.g. degrees): [N, num_targets]."""
        return outputs * jnp.asarray(self.std, jnp.float32) + jnp.asarray(self.mean, jnp.float32)

    def train_metric_sums(self, outputs, batch, per_example_loss) -> dict:
        valid = batch['valid'].astype(jnp.float32)[:, None]
        error = self.predict(outputs) - batch['target']
        return {'loss_sum': jnp.sum(per_example_loss * valid[:, 0]),
                'squared_error_sum': jnp.sum(jnp.square(error) * valid),
                'absolute_error_sum': jnp.sum(jnp.abs(error) * valid),
                'within_threshold': jnp.sum((jnp.abs(error) <= self.threshold) * valid),
                'count': jnp.sum(valid)}

    def eval_metric_sums(self, outputs, batch, per_example_loss) -> dict:
        sums = self.train_metric_sums(outputs, batch, per_example_loss)
        # Per-target figures too, when there is more than one target.
        if self.num_outputs > 1:
            valid = batch['valid'].astype(jnp.float32)[:, None]
            error = self.predict(outputs) - batch['target']
            sums['squared_error_per_target'] = jnp.sum(jnp.square(error) * valid, axis=0)
        return sums

    def eval_predictions(self, outputs, batch) -> dict:
        return {}  # every figure comes from the sums

    def summarize(self, sums: dict, predictions: dict | None = None) -> dict:
        """Final figures from summed metrics (host side, numpy): one division at the very end."""
        del predictions
        sums = {k: np.asarray(v, np.float64) for k, v in sums.items()}
        count = max(float(sums['count']), 1.0)
        values = count * self.num_outputs  # each example contributes one error per target
        out = {'loss': float(sums['loss_sum']) / count,
               'rmse': float(np.sqrt(sums['squared_error_sum'] / values)),
               'mae': float(sums['absolute_error_sum']) / values,
               'within_threshold': float(sums['within_threshold']) / values,
               'count': int(sums['count'])}
        if 'squared_error_per_target' in sums:
            out['rmse_per_target'] = {name: float(np.sqrt(v / count))
                                      for name, v in zip(self.targets, sums['squared_error_per_target'])}
        return out

    # The metrics a console row and the progress plot show (after the loss).
    headline = ('loss', 'rmse', 'mae')
