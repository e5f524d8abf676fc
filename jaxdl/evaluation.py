"""Deprecated since 2026-12-05, removed in jaxdl 0.2.0: this module was split by layer into `jaxdl.runs` (run
directories: load_run, evaluate_run, Run) and `jaxdl.train.evaluation` (the evaluation loop: evaluate, predict).
The old names still work here, each with a DeprecationWarning naming its new home."""

from jaxdl.deprecation import moved_names

__getattr__ = moved_names(
    __name__,
    {
        'Run': 'jaxdl.runs',
        'read_run_files': 'jaxdl.runs',
        'initial_state': 'jaxdl.runs',
        'load_run': 'jaxdl.runs',
        'evaluate_run': 'jaxdl.runs',
        'evaluate': 'jaxdl.train.evaluation',
        'predict': 'jaxdl.train.evaluation',
    },
    removed_in='0.2.0',
)
