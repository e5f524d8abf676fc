"""Semantic segmentation: a class for every pixel.

The loss is per-pixel softmax cross-entropy, averaged over each image's labelled pixels (pixels marked with the
ignore label -- e.g. the border of a trimap, or the outside of an augmented crop -- count for nothing), with
optional per-class weights. Every metric comes from one confusion matrix of pixel counts, summed exactly across
batches and devices like any other metric sum: pixel accuracy, per-class IoU and mean IoU.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.tasks import TaskDefaults, output_mismatch, require_option


@dataclasses.dataclass(frozen=True)
class Segmentation(TaskDefaults):
    """`task.options`: ignore_label (the mask value of pixels that count for nothing, e.g. a trimap's border) and
    class_weights (one loss weight per class, background first; () = all 1)."""

    num_classes: int  # including the background class 0
    ignore_label: int = 255
    class_weights: tuple[float, ...] = ()
    class_names: tuple[str, ...] = ()  # for per-class figures; () = the class ids

    data_kind = 'segmentation'
    head_options = {'head': 'pixels'}  # built-in models: decode to full resolution

    def __post_init__(self):
        require_option(
            isinstance(self.ignore_label, int) and self.ignore_label >= 0,
            'ignore_label',
            f'must be an integer >= 0, got {self.ignore_label!r}',
        )
        weights = self.class_weights
        require_option(
            isinstance(weights, tuple) and all(isinstance(w, (int, float)) and w >= 0 for w in weights),
            'class_weights',
            f'must be numbers >= 0, one per class, got {weights!r}',
        )
        require_option(
            len(weights) in (0, self.num_classes),
            'class_weights',
            f'needs one weight per class ({self.num_classes}: {", ".join(self.class_names)}), got {len(weights)}',
        )

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    def check_outputs(self, outputs, image_shape, model: str) -> None:
        if getattr(outputs, 'shape', None) != (2, *image_shape[:2], self.num_classes):
            raise output_mismatch(
                model,
                outputs,
                f'[batch, {image_shape[0]}, {image_shape[1]}, {self.num_classes}]: one score per class for every pixel',
            )

    def _labelled(self, batch):
        """(labels with ignored pixels set to 0, float weight of each pixel: 0 ignored, class weight otherwise)."""
        mask = batch['mask']
        labelled = mask != self.ignore_label
        labels = jnp.where(labelled, mask, 0)
        weights = labelled.astype(jnp.float32)
        if self.class_weights:
            weights = weights * jnp.asarray(self.class_weights, jnp.float32)[labels]
        return labels, weights

    def per_example_loss(self, logits, batch):
        labels, weights = self._labelled(batch)
        per_pixel = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return jnp.sum(per_pixel * weights, axis=(1, 2)) / jnp.maximum(jnp.sum(weights, axis=(1, 2)), 1e-6)

    def predict(self, logits):
        """{'class_map': int32 [N, H, W], the most probable class of each pixel; 'probabilities': float32
        [N, H, W, num_classes]}."""
        return {'class_map': jnp.argmax(logits, -1).astype(jnp.int32), 'probabilities': jax.nn.softmax(logits, -1)}

    def _confusion(self, logits, batch):
        """Pixel counts [true class, predicted class] over labelled pixels of valid images."""
        labels, _ = self._labelled(batch)
        counted = (batch['mask'] != self.ignore_label) & batch['valid'][:, None, None]
        predicted = jnp.argmax(logits, -1)
        flat = (labels * self.num_classes + predicted).reshape(-1)
        # int32: exact up to 2**31 pixels per cell over a whole split (float32 would stop at 2**24, 16.7M pixels:
        # fewer than a VOC validation set at 512x512).
        counts = (
            jnp.zeros(self.num_classes * self.num_classes, jnp.int32)
            .at[flat]
            .add(counted.reshape(-1).astype(jnp.int32))
        )
        return counts.reshape(self.num_classes, self.num_classes)

    def train_metric_sums(self, logits, batch, per_example_loss) -> dict:
        valid = batch['valid'].astype(jnp.float32)
        return {
            'loss_sum': jnp.sum(per_example_loss * valid),
            'count': jnp.sum(valid),
            'confusion': self._confusion(logits, batch),
        }

    def summarize(self, sums: dict, predictions: dict | None = None) -> dict:
        """Final figures from summed metrics (host side, numpy, in float64)."""
        del predictions
        sums = {k: np.asarray(v, np.float64) for k, v in sums.items()}
        confusion = sums['confusion']
        true_pixels, predicted_pixels, hits = confusion.sum(1), confusion.sum(0), np.diag(confusion)
        union = true_pixels + predicted_pixels - hits
        present = union > 0  # a class neither in the labels nor predicted has no IoU; it is left out of the mean
        iou = np.where(present, hits / np.maximum(union, 1), np.nan)
        names = self.class_names or tuple(str(i) for i in range(self.num_classes))
        return {
            'loss': float(sums['loss_sum']) / max(float(sums['count']), 1.0),
            'mean_iou': float(np.nanmean(iou)) if present.any() else 0.0,
            'pixel_accuracy': float(hits.sum() / max(confusion.sum(), 1.0)),
            'iou': {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, iou)},
            'count': int(sums['count']),
        }

    # The metrics a console row and the progress plot show (after the loss).
    headline = ('loss', 'mean_iou', 'pixel_accuracy')


TASK = Segmentation
