"""Object detection, CenterNet style (Zhou et al. 2019, "Objects as Points"): single stage, anchor-free.

The model outputs, at 1/output_stride of the image resolution, C heatmap logits (one per class: "an object of this
class is centred in this cell") and 4 box channels (height and width in cells, then the centre's offset inside its
cell). Training targets are drawn inside the jitted step from the padded ground-truth boxes: a Gaussian peak of
value 1 at each object's centre cell, its radius from the object's size as in CenterNet.

    loss = focal(heatmap) + size_weight * L1(size) + offset_weight * L1(offset), per image, / its object count

Decoding (`decode`) runs inside jit: peaks are the cells equal to their 3x3 neighbourhood's maximum (CenterNet's
replacement for non-maximum suppression), the `max_detections` highest peaks over all cells and classes become a
fixed-size, padded set of boxes, scores and classes per image. COCO mAP@[.5:.95] and mAP@.5 are computed by
pycocotools, the reference implementation, on the host from a whole split's gathered predictions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.tasks import TaskDefaults, output_mismatch, require_option


def gaussian_radius(height, width, min_overlap: float = 0.7):
    """CenterNet's radius (in cells) within which a box of this size still overlaps the true one by `min_overlap`
    IoU (the reference implementation's formula, as published)."""
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + jnp.sqrt(jnp.maximum(b1**2 - 4 * c1, 0.0))) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + jnp.sqrt(jnp.maximum(b2**2 - 16 * c2, 0.0))) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + jnp.sqrt(jnp.maximum(b3**2 - 4 * a3 * c3, 0.0))) / 2
    return jnp.minimum(jnp.minimum(r1, r2), r3)


@dataclasses.dataclass(frozen=True)
class Detection(TaskDefaults):
    """`task.options`: max_objects (ground-truth boxes per image, padded to this; more is an error),
    max_detections (boxes per image the decoder returns, best first), output_stride (the heatmap's cell in pixels:
    1, 2, 4 or 8), size_weight and offset_weight (loss weights of the box size in cells and of the centre's offset
    inside its cell, relative to the heatmap's focal loss)."""

    num_classes: int
    max_objects: int = 50
    max_detections: int = 100
    output_stride: int = 4
    size_weight: float = 0.1
    offset_weight: float = 1.0
    class_names: tuple[str, ...] = ()

    data_kind = 'detection'

    def __post_init__(self):
        for key in ('max_objects', 'max_detections'):
            value = getattr(self, key)
            require_option(isinstance(value, int) and value > 0, key, f'must be a positive integer, got {value!r}')
        require_option(
            self.output_stride in (1, 2, 4, 8), 'output_stride', f'must be 1, 2, 4 or 8, got {self.output_stride!r}'
        )
        for key in ('size_weight', 'offset_weight'):
            value = getattr(self, key)
            require_option(isinstance(value, (int, float)) and value >= 0, key, f'must be >= 0, got {value!r}')

    @property
    def num_outputs(self) -> int:
        return self.num_classes  # heatmap channels; the head adds its 4 box channels

    @property  # per instance (its output stride), where TaskDefaults' is one for the class
    def head_options(self) -> dict:  # type: ignore[override]
        return {'head': 'centernet', 'output_stride': self.output_stride}

    def check_outputs(self, outputs, image_shape, model: str) -> None:
        h, w = image_shape[0] // self.output_stride, image_shape[1] // self.output_stride
        if getattr(outputs, 'shape', None) != (2, h, w, self.num_classes + 4):
            raise output_mismatch(
                model,
                outputs,
                f'[batch, {h}, {w}, {self.num_classes + 4}]: at 1/{self.output_stride} '
                f'of the image, a heatmap logit per class, then box height, width '
                f'and the centre offset (y, x)',
            )

    # ------------------------------------------------------------------------------------------------ targets
    def targets(self, batch, grid_shape):
        """Training targets on a grid of (h, w) cells from the padded boxes of a batch.

        Returns the heatmap [N, h, w, C], each object's centre cell (iy, ix) [N, M], size in cells [N, M, 2],
        offset of its centre inside the cell [N, M, 2], and which objects count [N, M] (real and not ignored)."""
        h, w = grid_shape
        boxes = batch['boxes']
        active = batch['box_valid'] & ~batch['box_ignore']
        scale = jnp.asarray([h, w], jnp.float32)
        centre = (boxes[..., :2] + boxes[..., 2:]) / 2 * scale
        size = (boxes[..., 2:] - boxes[..., :2]) * scale
        cell = jnp.clip(jnp.floor(centre).astype(jnp.int32), 0, jnp.asarray([h - 1, w - 1]))
        offset = centre - cell
        radius = jnp.maximum(jnp.floor(gaussian_radius(size[..., 0], size[..., 1])), 0.0)
        sigma = (2 * radius + 1) / 6
        ys = jnp.arange(h, dtype=jnp.float32)[:, None]
        xs = jnp.arange(w, dtype=jnp.float32)[None, :]
        dy = ys[None, None] - cell[..., 0, None, None]
        dx = xs[None, None] - cell[..., 1, None, None]
        peaks = jnp.exp(-(dy**2 + dx**2) / (2 * sigma[..., None, None] ** 2))  # [N, M, h, w]
        peaks = jnp.where(active[..., None, None], peaks, 0.0)
        n, m = active.shape
        rows = jnp.broadcast_to(jnp.arange(n)[:, None], (n, m))
        labels = jnp.clip(batch['box_labels'], 0, self.num_classes - 1)
        heatmap = jnp.zeros((n, h, w, self.num_classes), jnp.float32).at[rows, :, :, labels].max(peaks)
        return heatmap, cell, size, offset, active

    def _parts(self, outputs, batch):
        """Per-image (focal, size, offset) losses."""
        logits, box = outputs[..., : self.num_classes], outputs[..., self.num_classes :]
        heatmap, cell, size, offset, active = self.targets(batch, outputs.shape[1:3])
        positive = heatmap >= 1.0  # exactly the centre cells: exp(0) = 1
        log_p, log_not_p = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
        p = jnp.exp(log_p)
        focal = jnp.where(positive, log_p * (1 - p) ** 2, log_not_p * p**2 * (1 - heatmap) ** 4)
        num_positive = jnp.maximum(jnp.sum(positive, axis=(1, 2, 3)), 1)
        focal = -jnp.sum(focal, axis=(1, 2, 3)) / num_positive
        rows = jnp.arange(outputs.shape[0])[:, None]
        at_centre = box[rows, cell[..., 0], cell[..., 1]]  # [N, M, 4]
        weight = active.astype(jnp.float32)[..., None]
        count = jnp.maximum(jnp.sum(active, axis=1), 1)
        size_loss = jnp.sum(jnp.abs(at_centre[..., :2] - size) * weight, axis=(1, 2)) / count
        offset_loss = jnp.sum(jnp.abs(at_centre[..., 2:] - offset) * weight, axis=(1, 2)) / count
        return focal, size_loss, offset_loss

    def per_example_loss(self, outputs, batch):
        focal, size_loss, offset_loss = self._parts(outputs, batch)
        return focal + self.size_weight * size_loss + self.offset_weight * offset_loss

    # ------------------------------------------------------------------------------------------------ decoding
    def decode(self, outputs):
        """{'boxes' [N, K, 4] normalised (ymin, xmin, ymax, xmax), 'scores' [N, K], 'classes' [N, K]}, the K =
        max_detections best peaks per image, best first (low scores are the padding)."""
        n, h, w, _ = outputs.shape
        heat = jax.nn.sigmoid(outputs[..., : self.num_classes])
        # The 3x3 neighbourhood's maximum as the maximum of nine shifted copies (a max pool's result; ONNX Runtime
        # refuses the max pool jax2onnx makes of an NHWC window)
        padded = jnp.pad(heat, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
        shifted = [padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]
        neighbourhood_max = functools.reduce(jnp.maximum, shifted)
        peaks = jnp.where(heat == neighbourhood_max, heat, 0.0)
        k = min(self.max_detections, h * w * self.num_classes)
        scores, index = _top_k(peaks.reshape(n, -1), k)
        # lax.div of these non-negative indices is `//`, whose sign fix-up (a remainder) jax2onnx cannot convert
        # under a symbolic batch size; the remainders are differences for the same reason
        cell = jax.lax.div(index, self.num_classes)
        classes = index - cell * self.num_classes
        iy = jax.lax.div(cell, w)
        ix = cell - iy * w
        box = jnp.take_along_axis(outputs[..., self.num_classes :].reshape(n, h * w, -1), cell[..., None], axis=1)
        centre_y, centre_x = iy + box[..., 2], ix + box[..., 3]
        half_h, half_w = jnp.maximum(box[..., 0], 0) / 2, jnp.maximum(box[..., 1], 0) / 2
        boxes = jnp.stack(
            [(centre_y - half_h) / h, (centre_x - half_w) / w, (centre_y + half_h) / h, (centre_x + half_w) / w],
            axis=-1,
        )
        return {'boxes': jnp.clip(boxes, 0.0, 1.0), 'scores': scores, 'classes': classes.astype(jnp.int32)}

    def predict(self, outputs):
        return self.decode(outputs)

    # ------------------------------------------------------------------------------------------------ metrics
    def train_metric_sums(self, outputs, batch, per_example_loss) -> dict:
        valid = batch['valid'].astype(jnp.float32)
        focal, size_loss, offset_loss = self._parts(outputs, batch)
        return {
            'loss_sum': jnp.sum(per_example_loss * valid),
            'heatmap_loss_sum': jnp.sum(focal * valid),
            'size_loss_sum': jnp.sum(size_loss * valid),
            'offset_loss_sum': jnp.sum(offset_loss * valid),
            'count': jnp.sum(valid),
        }

    def eval_predictions(self, outputs, batch) -> dict:
        """What COCO evaluation reads, per image: decoded detections and the ground truth, in pixels."""
        pixels = jnp.asarray([outputs.shape[1], outputs.shape[2]] * 2, jnp.float32) * self.output_stride
        detections = self.decode(outputs)
        return {
            'boxes': detections['boxes'] * pixels,
            'scores': detections['scores'],
            'classes': detections['classes'],
            'true_boxes': batch['boxes'] * pixels,
            'true_labels': batch['box_labels'],
            'true_valid': batch['box_valid'],
            'true_ignore': batch['box_ignore'],
            'valid': batch['valid'],
        }

    def summarize(self, sums: dict, predictions: dict | None = None) -> dict:
        sums = {k: np.asarray(v, np.float64) for k, v in sums.items()}
        count = max(float(sums['count']), 1.0)
        out = {
            'loss': float(sums['loss_sum']) / count,
            'heatmap_loss': float(sums['heatmap_loss_sum']) / count,
            'size_loss': float(sums['size_loss_sum']) / count,
            'offset_loss': float(sums['offset_loss_sum']) / count,
        }
        if predictions is not None:
            out.update(coco_metrics(predictions, self.class_names or tuple(map(str, range(self.num_classes)))))
        out['count'] = int(sums['count'])
        return out

    headline = ('loss', 'map_50', 'map')


TASK = Detection


def _xywh(boxes: np.ndarray) -> np.ndarray:
    """(ymin, xmin, ymax, xmax) -> COCO's (x, y, width, height)."""
    return np.stack([boxes[..., 1], boxes[..., 0], boxes[..., 3] - boxes[..., 1], boxes[..., 2] - boxes[..., 0]], -1)


def coco_metrics(predictions: dict, class_names: tuple[str, ...]) -> dict:
    """COCO box mAP@[.5:.95], mAP@.5, mAP@.75 and AP per class (pycocotools), over every valid image.

    Ground truth marked ignore (crowd regions, VOC's "difficult" objects) becomes COCO's iscrowd: a detection on
    it is neither a hit nor a false positive. With no ground-truth object at all the APs are undefined: None."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    p = {k: np.asarray(v) for k, v in predictions.items()}
    images = np.flatnonzero(p['valid'])
    gt, annotations, detections = COCO(), [], []  # type: COCO, list[dict], list[np.ndarray]
    for image_id in images:
        real = p['true_valid'][image_id]  # the padding rows of an image's boxes are not ground truth
        for box, label, ignore in zip(
            _xywh(p['true_boxes'][image_id])[real], p['true_labels'][image_id][real], p['true_ignore'][image_id][real]
        ):
            annotations.append(
                {
                    'id': len(annotations) + 1,
                    'image_id': int(image_id),
                    'category_id': int(label),
                    'bbox': [float(v) for v in box],
                    'area': float(box[2] * box[3]),
                    'iscrowd': int(ignore),
                }
            )
        boxes = _xywh(p['boxes'][image_id])
        detections.append(
            np.column_stack([np.full(len(boxes), image_id), boxes, p['scores'][image_id], p['classes'][image_id]])
        )
    if not annotations:
        return {'map': None, 'map_50': None, 'map_75': None}
    gt.dataset = {
        'images': [{'id': int(i)} for i in images],
        'annotations': annotations,
        'categories': [{'id': i, 'name': name} for i, name in enumerate(class_names)],
    }
    quiet = contextlib.redirect_stdout(io.StringIO())  # pycocotools reports on stdout, which is for results
    with quiet:
        gt.createIndex()
        dt = gt.loadRes(np.concatenate(detections).astype(np.float64))
        evaluation = COCOeval(gt, dt, 'bbox')
        evaluation.params.maxDets = [1, 10, max(100, max(len(d) for d in detections))]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    # precision[iou threshold, recall, class, area range 'all', last maxDets]; -1 where a class has no ground truth.
    precision = evaluation.eval['precision'][:, :, :, 0, -1]
    per_class = {}
    for c, name in enumerate(class_names):
        values = precision[:, :, c]
        per_class[name] = float(values[values > -1].mean()) if (values > -1).any() else None
    undefined = lambda v: None if v < 0 else float(v)
    return {
        'map': undefined(stats[0]),
        'map_50': undefined(stats[1]),
        'map_75': undefined(stats[2]),
        'ap_per_class': per_class,
    }


def _top_k(x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """`jax.lax.top_k` over the last axis, by a stable sort: the same values and indices (ties: the lower index
    first). top_k lowers to CHLO, which the newest jax serializes in a form TensorFlow's loader of exported
    models (XlaCallModule) cannot read yet; a sort is core StableHLO and an ONNX TopK, so every export carries it."""
    index = jnp.broadcast_to(jnp.arange(x.shape[-1], dtype=jnp.int32), x.shape)
    negated, order = jax.lax.sort((-x, index), dimension=x.ndim - 1, is_stable=True, num_keys=1)
    return -negated[..., :k], order[..., :k]
