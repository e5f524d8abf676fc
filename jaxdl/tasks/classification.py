"""Image classification: softmax cross-entropy; loss, accuracy, confidence, top-k, confusion matrix, ECE."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.tasks import TaskDefaults, output_mismatch, require_option


@dataclasses.dataclass(frozen=True)
class Classification(TaskDefaults):
    """Static (hashable) description of the task; every method is a pure function of its arguments.
    `task.options`: label_smoothing, top_k (reported as top_k_accuracy), calibration_bins (of the ECE)."""

    num_classes: int
    label_smoothing: float = 0.0
    top_k: int = 5
    calibration_bins: int = 15

    data_kind = 'classification'

    def __post_init__(self):
        require_option(
            isinstance(self.label_smoothing, (int, float)) and 0.0 <= self.label_smoothing < 1.0,
            'label_smoothing',
            f'must be in [0, 1), got {self.label_smoothing!r}',
        )
        require_option(isinstance(self.top_k, int) and self.top_k >= 1, 'top_k', f'must be >= 1, got {self.top_k!r}')
        require_option(
            isinstance(self.calibration_bins, int) and self.calibration_bins >= 1,
            'calibration_bins',
            f'must be >= 1, got {self.calibration_bins!r}',
        )

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    def check_outputs(self, outputs, image_shape, model: str) -> None:
        if getattr(outputs, 'shape', None) != (2, self.num_classes):
            raise output_mismatch(model, outputs, f'[batch, {self.num_classes}]: one score per class')

    def per_example_loss(self, logits, batch):
        labels = jax.nn.one_hot(batch['label'], self.num_classes)
        if self.label_smoothing:
            labels = optax.smooth_labels(labels, self.label_smoothing)
        return optax.softmax_cross_entropy(logits, labels)

    def predict(self, logits):
        """Class probabilities: softmax turns each class score into the probability of that class."""
        return jax.nn.softmax(logits, axis=-1)

    def train_metric_sums(self, logits, batch, per_example_loss) -> dict:
        valid = batch['valid'].astype(jnp.float32)
        probs = self.predict(logits)
        correct = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
        return {
            'loss_sum': jnp.sum(per_example_loss * valid),
            'correct': jnp.sum(correct * valid),
            'confidence_sum': jnp.sum(jnp.max(probs, -1) * valid),
            'count': jnp.sum(valid),
        }

    def eval_metric_sums(self, logits, batch, per_example_loss) -> dict:
        sums = self.train_metric_sums(logits, batch, per_example_loss)
        valid = batch['valid'].astype(jnp.float32)
        labels = batch['label']
        k = min(self.top_k, self.num_classes)
        top_k = jax.lax.top_k(logits, k)[1]
        sums['top_k_correct'] = jnp.sum(jnp.any(top_k == labels[:, None], -1) * valid)
        predicted = jnp.argmax(logits, -1)
        # Padding rows add zeros, whatever their (meaningless) label and prediction.
        sums['confusion'] = (
            jnp.zeros((self.num_classes, self.num_classes), jnp.float32).at[labels, predicted].add(valid)
        )
        confidence = jnp.max(self.predict(logits), -1)
        bins = jnp.clip((confidence * self.calibration_bins).astype(jnp.int32), 0, self.calibration_bins - 1)
        one_hot_bins = jax.nn.one_hot(bins, self.calibration_bins) * valid[:, None]
        sums['bin_count'] = one_hot_bins.sum(0)
        sums['bin_confidence'] = (one_hot_bins * confidence[:, None]).sum(0)
        sums['bin_correct'] = (one_hot_bins * (predicted == labels)[:, None]).sum(0)
        return sums

    def eval_predictions(self, outputs, batch) -> dict:
        return {}  # every figure comes from the sums

    def summarize(self, sums: dict, predictions: dict | None = None) -> dict:
        """Final figures from summed metrics (host side, numpy): one division at the very end."""
        del predictions
        sums = {k: np.asarray(v, np.float64) for k, v in sums.items()}
        count = max(float(sums['count']), 1.0)
        out = {
            'loss': float(sums['loss_sum']) / count,
            'accuracy': float(sums['correct']) / count,
            'confidence': float(sums['confidence_sum']) / count,
            'count': int(sums['count']),
        }
        if 'top_k_correct' in sums:
            out[f'top_{min(self.top_k, self.num_classes)}_accuracy'] = float(sums['top_k_correct']) / count
            out['confusion_matrix'] = sums['confusion'].astype(np.int64).tolist()
            gap = np.abs(sums['bin_correct'] - sums['bin_confidence'])  # |acc - conf| * n per bin
            out['expected_calibration_error'] = float(gap.sum()) / count
        return out

    # The metrics a console row and the best-model choice read.
    headline = ('loss', 'accuracy', 'confidence')
    prediction_name = 'probabilities'


TASK = Classification
