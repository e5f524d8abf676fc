"""Image regression: continuous targets (e.g. a rotation angle in degrees) instead of classes.

The model predicts targets normalised as (t - mean) / std, so the loss sees values of order one whatever the
units; every reported figure (rmse, mae, within_threshold, predictions) is de-normalised back into the targets'
own units. The loss is mean squared error or Huber on the normalised values.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.tasks import TaskDefaults, output_mismatch, require_option


@dataclasses.dataclass(frozen=True)
class Regression(TaskDefaults):
    """`task.options`: targets (the dataset features predicted, each a float), mean and std (one per target, or one
    for all: targets are normalised as (t - mean) / std for the loss), loss ('mse' or 'huber', on normalised
    targets), huber_delta, threshold (within_threshold: the share of predictions this close to the truth)."""

    targets: tuple[str, ...] = ('angle',)
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    loss: str = 'mse'
    huber_delta: float = 1.0
    threshold: float = 10.0

    data_kind = 'regression'
    flips_change_targets = True  # a mirrored image has another target (a flip negates an angle)

    def __post_init__(self):
        n = len(self.targets)
        require_option(
            n >= 1 and all(isinstance(t, str) and t for t in self.targets),
            'targets',
            f'must name at least one dataset feature, got {self.targets!r}',
        )
        for key in ('mean', 'std'):
            values = getattr(self, key)
            require_option(
                isinstance(values, tuple)
                and len(values) in (1, n)
                and all(isinstance(v, (int, float)) for v in values),
                key,
                f'needs 1 or {n} numbers (one per target), got {values!r}',
            )
        require_option(all(v > 0 for v in self.std), 'std', f'must be positive, got {self.std!r}')
        require_option(self.loss in ('mse', 'huber'), 'loss', f"must be 'mse' or 'huber', got {self.loss!r}")
        require_option(
            isinstance(self.huber_delta, (int, float)) and self.huber_delta > 0,
            'huber_delta',
            f'must be positive, got {self.huber_delta!r}',
        )
        require_option(
            isinstance(self.threshold, (int, float)) and self.threshold > 0,
            'threshold',
            f'must be positive, got {self.threshold!r}',
        )

    @property
    def num_outputs(self) -> int:
        return len(self.targets)

    def check_outputs(self, outputs, image_shape, model: str) -> None:
        if getattr(outputs, 'shape', None) != (2, self.num_outputs):
            raise output_mismatch(
                model, outputs, f'[batch, {self.num_outputs}]: one value per target ({", ".join(self.targets)})'
            )

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
        return {
            'loss_sum': jnp.sum(per_example_loss * valid[:, 0]),
            'squared_error_sum': jnp.sum(jnp.square(error) * valid),
            'absolute_error_sum': jnp.sum(jnp.abs(error) * valid),
            'within_threshold': jnp.sum((jnp.abs(error) <= self.threshold) * valid),
            'count': jnp.sum(valid),
        }

    def eval_metric_sums(self, outputs, batch, per_example_loss) -> dict:
        sums = self.train_metric_sums(outputs, batch, per_example_loss)
        # Per-target figures too, when there is more than one target.
        if self.num_outputs > 1:
            valid = batch['valid'].astype(jnp.float32)[:, None]
            error = self.predict(outputs) - batch['target']
            sums['squared_error_per_target'] = jnp.sum(jnp.square(error) * valid, axis=0)
        return sums

    def summarize(self, sums: dict, predictions: dict | None = None) -> dict:
        """Final figures from summed metrics (host side, numpy): one division at the very end."""
        del predictions
        sums = {k: np.asarray(v, np.float64) for k, v in sums.items()}
        count = max(float(sums['count']), 1.0)
        values = count * self.num_outputs  # each example contributes one error per target
        out: dict[str, Any] = {
            'loss': float(sums['loss_sum']) / count,
            'rmse': float(np.sqrt(sums['squared_error_sum'] / values)),
            'mae': float(sums['absolute_error_sum']) / values,
            'within_threshold': float(sums['within_threshold']) / values,
            'count': int(sums['count']),
        }
        if 'squared_error_per_target' in sums:
            out['rmse_per_target'] = {
                name: float(np.sqrt(v / count)) for name, v in zip(self.targets, sums['squared_error_per_target'])
            }
        return out

    # The metrics a console row and the progress plot show (after the loss).
    headline = ('loss', 'rmse', 'mae')
    prediction_name = 'targets'


TASK = Regression
