"""jaxdl: a JAX functional training toolkit.

The public API is loaded lazily, so `import jaxdl` (and `jaxdl --help`) stays fast: TensorFlow, which the input
pipeline needs, costs seconds to import and a research script that only uses the pure step never pays for it.
"""

import importlib
from typing import Any

__version__ = '0.1.0'

_EXPORTS = {
    'TrainState': 'jaxdl.train.state',
    'create_train_state': 'jaxdl.train.state',
    'train_step': 'jaxdl.train.step',
    'eval_step': 'jaxdl.train.step',
    'TrainMetrics': 'jaxdl.train.step',
    'fit': 'jaxdl.train.loop',
    'evaluate': 'jaxdl.train.evaluation',
    'predict': 'jaxdl.train.evaluation',
    'load_run': 'jaxdl.runs',
    'default_config': 'jaxdl.config',
    'Plan': 'jaxdl.config',
    'build_model': 'jaxdl.models',
    'build_task': 'jaxdl.tasks',
    'Task': 'jaxdl.tasks',
    'build_optimizer': 'jaxdl.optim',
}
_SUBPACKAGES = (
    'config',
    'data',
    'models',
    'tasks',
    'optim',
    'train',
    'checkpoint',
    'runs',
    'plots',
    'registry',
    'transfer',
)

__all__ = sorted(_EXPORTS) + list(_SUBPACKAGES)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f'jaxdl.{name}')
    raise AttributeError(f'module jaxdl has no attribute {name!r}')
