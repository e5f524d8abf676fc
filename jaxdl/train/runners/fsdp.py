"""jit over a mesh of every device (of every process), the state split by the sharding rules
(`train.sharding_rules`, `train.fsdp_min_size`; jaxdl.train.sharding)."""

from __future__ import annotations

from jaxdl.train.runners import RunnerSettings, StepRunner
from jaxdl.train.runners._mesh import mesh_runner


def RUNNER(task, settings: RunnerSettings) -> StepRunner:
    """jit over a mesh of every device (of every process), the state split by the sharding rules."""
    return mesh_runner('fsdp', task, settings)
