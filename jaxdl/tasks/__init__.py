"""Tasks: what a model's output means. Each task gives a per-example loss, metric *sums* (reduced across
devices and batches, divided once at the end), the final figures computed from those sums, and predictions.
`task.num_outputs` is the width of the model's head and `task.head_options` says which head reads the backbone.

A task whose figures cannot be summed (detection's COCO mAP) also returns per-example `eval_predictions`, which
evaluation gathers over the whole split and hands to `summarize`; for the others that is an empty dict.
"""
from jaxdl.tasks.classification import Classification
from jaxdl.tasks.detection import Detection
from jaxdl.tasks.regression import Regression
from jaxdl.tasks.segmentation import Segmentation

TASKS = ('classification', 'regression', 'segmentation', 'detection')


def build_task(task_cfg, num_classes: int, class_names=()):
    """`num_classes`: of the dataset's label feature (after class selection): classification's head width; for
    segmentation every pixel class including background 0; for detection the object classes."""
    class_names = tuple(class_names)
    if task_cfg.name == 'classification':
        return Classification(num_classes=num_classes, label_smoothing=task_cfg.label_smoothing,
                              top_k=task_cfg.top_k, calibration_bins=task_cfg.calibration_bins)
    if task_cfg.name == 'regression':
        r = task_cfg.regression
        return Regression(targets=tuple(r.targets), mean=tuple(float(v) for v in r.mean),
                          std=tuple(float(v) for v in r.std), loss=r.loss, huber_delta=float(r.huber_delta),
                          threshold=float(r.threshold))
    if task_cfg.name == 'segmentation':
        s = task_cfg.segmentation
        return Segmentation(num_classes=num_classes, ignore_label=s.ignore_label,
                            class_weights=tuple(float(w) for w in s.class_weights), class_names=class_names)
    if task_cfg.name == 'detection':
        d = task_cfg.detection
        return Detection(num_classes=num_classes, output_stride=d.output_stride, max_detections=d.max_detections,
                         size_weight=float(d.size_weight), offset_weight=float(d.offset_weight),
                         class_names=class_names)
    raise ValueError(f'unknown task {task_cfg.name!r}; valid: {", ".join(TASKS)}')
