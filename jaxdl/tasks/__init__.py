"""Tasks: what a model's output means. Each task gives a per-example loss, metric *sums* (reduced across
devices and batches, divided once at the end), the final figures computed from those sums, and predictions.
`task.num_outputs` is the width of the model's head."""
from jaxdl.tasks.classification import Classification
from jaxdl.tasks.regression import Regression

TASKS = ('classification', 'regression')


def build_task(task_cfg, num_classes: int):
    """`num_classes`: of the dataset's label feature (after class selection); classification's head width."""
    if task_cfg.name == 'classification':
        return Classification(num_classes=num_classes, label_smoothing=task_cfg.label_smoothing,
                              top_k=task_cfg.top_k, calibration_bins=task_cfg.calibration_bins)
    if task_cfg.name == 'regression':
        r = task_cfg.regression
        return Regression(targets=tuple(r.targets), mean=tuple(float(v) for v in r.mean),
                          std=tuple(float(v) for v in r.std), loss=r.loss, huber_delta=float(r.huber_delta),
                          threshold=float(r.threshold))
    raise ValueError(f'unknown task {task_cfg.name!r}; valid: {", ".join(TASKS)}')
