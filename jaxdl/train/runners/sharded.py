"""jit over a mesh of every device (of every process), the state replicated."""

from __future__ import annotations

from jaxdl.train.runners import RunnerSettings, StepRunner
from jaxdl.train.runners._mesh import mesh_runner


def RUNNER(task, settings: RunnerSettings) -> StepRunner:
    """jit over a mesh of every device (of every process), the state replicated."""
    return mesh_runner('sharded', task, settings)
