"""Multi-label classification: which of C classes each image holds (any number of them). One sigmoid per class
and binary cross-entropy; per-class average precision and its mean (mAP, from every example's probabilities,
gathered over the split: a ranking figure cannot be summed), and F1 at a threshold (micro over every label, and
the mean of the per-class F1s), from summed true/false positives and negatives."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.tasks import TaskDefaults, output_mismatch, require_option


@dataclasses.dataclass(frozen=True)
class MultiLabelClassification(TaskDefaults):
    """`task.options`: threshold (a class is predicted present from this probability on)."""

    num_classes: int
    class_names: tuple[str, ...] = ()
    threshold: float = 0.5

    data_kind = 'multilabel'
    headline = ('loss', 'map', 'f1')
    prediction_name = 'probabilities'

    def __post_init__(self):
        require_option(
            isinstance(self.threshold, (int, float)) and 0.0 < self.threshold < 1.0,
            'threshold',
            f'must be in (0, 1), got {self.threshold!r}',
        )

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    def check_outputs(self, outputs, image_shape, model: str) -> None:
        if getattr(outputs, 'shape', None) != (2, self.num_classes):
            raise output_mismatch(model, outputs, f'[batch, {self.num_classes}]: one logit per class')

    def per_example_loss(self, logits, batch):
        """Binary cross-entropy averaged over the classes."""
        return optax.sigmoid_binary_cross_entropy(logits, batch['labels']).mean(-1)

    def predict(self, logits):
        """Each class's probability of being present, independently of the others."""
        return jax.nn.sigmoid(logits)

    def train_metric_sums(self, logits, batch, per_example_loss) -> dict:
        valid = batch['valid'].astype(jnp.float32)[:, None]
        predicted = (self.predict(logits) >= self.threshold).astype(jnp.float32)
        truth = batch['labels']
        return {
            'loss_sum': jnp.sum(per_example_loss * valid[:, 0]),
            'count': jnp.sum(valid),
            'true_positives': jnp.sum(predicted * truth * valid, 0),
            'false_positives': jnp.sum(predicted * (1 - truth) * valid, 0),
            'false_negatives': jnp.sum((1 - predicted) * truth * valid, 0),
            'exact': jnp.sum(jnp.all(predicted == truth, -1) * valid[:, 0]),
        }

    def eval_predictions(self, logits, batch) -> dict:
        return {'probabilities': self.predict(logits), 'labels': batch['labels'], 'valid': batch['valid']}

    def summarize(self, sums: dict, predictions: dict | None = None) -> dict:
        sums = {k: np.asarray(v, np.float64) for k, v in sums.items()}
        count = max(float(sums['count']), 1.0)
        tp, fp, fn = sums['true_positives'], sums['false_positives'], sums['false_negatives']
        names = self.class_names or tuple(map(str, range(self.num_classes)))
        per_class_f1 = [2 * t / (2 * t + p + n) if t + p + n else None for t, p, n in zip(tp, fp, fn)]
        defined = [f for f in per_class_f1 if f is not None]
        out = {
            'loss': float(sums['loss_sum']) / count,
            'f1': float(2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1.0)),
            'macro_f1': float(np.mean(defined)) if defined else None,
            'exact_match': float(sums['exact']) / count,
            'f1_per_class': {n: None if f is None else float(f) for n, f in zip(names, per_class_f1)},
        }
        if predictions is not None:
            out.update(average_precision(predictions, names))
        out['count'] = int(sums['count'])
        return out


def average_precision(predictions: dict, class_names: tuple[str, ...]) -> dict:
    """Each class's average precision over the valid examples (scikit-learn's, the area under the step-wise
    precision-recall curve), and their mean over the classes present in the split (AP is undefined, None, for a
    class no example holds)."""
    from sklearn.metrics import average_precision_score

    valid = np.asarray(predictions['valid'], bool)
    probabilities = np.asarray(predictions['probabilities'], np.float64)[valid]
    labels = np.asarray(predictions['labels'])[valid] > 0.5
    per_class = {
        name: (float(average_precision_score(labels[:, c], probabilities[:, c])) if labels[:, c].any() else None)
        for c, name in enumerate(class_names)
    }
    defined = [v for v in per_class.values() if v is not None]
    return {'map': float(np.mean(defined)) if defined else None, 'ap_per_class': per_class}


TASK = MultiLabelClassification
