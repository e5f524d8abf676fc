"""Tasks: what a model's output means. Each task gives a per-example loss, metric *sums* (reduced across
devices and batches, divided once at the end), the final figures computed from those sums, and predictions."""
from jaxdl.tasks.classification import Classification

TASKS = ('classification',)


def build_task(task_cfg, num_classes: int):
    if task_cfg.name == 'classification':
        return Classification(num_classes=num_classes, label_smoothing=task_cfg.label_smoothing,
                              top_k=task_cfg.top_k, calibration_bins=task_cfg.calibration_bins)
    raise ValueError(f'unknown task {task_cfg.name!r}; valid: {", ".join(TASKS)}')
