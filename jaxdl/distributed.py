"""Several cooperating processes on JAX's own multi-process runtime (`jax.distributed`).

Each process runs the same `jaxdl train` command; `initialize` joins them before any JAX computation. Where JAX
detects the cluster itself (Cloud TPU, SLURM, Open MPI) `--distributed` is enough; elsewhere the coordinator
address, process count and this process's id come from flags or from JAXDL_COORDINATOR_ADDRESS,
JAXDL_NUM_PROCESSES and JAXDL_PROCESS_ID. On CPU the collectives run over gloo. See docs/distributed.md.
"""

from __future__ import annotations

import os
from typing import Any

from jaxdl.errors import ConfigError

ENV = {
    'coordinator': 'JAXDL_COORDINATOR_ADDRESS',
    'num_processes': 'JAXDL_NUM_PROCESSES',
    'process_id': 'JAXDL_PROCESS_ID',
}


def settings(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None, auto: bool = False
) -> dict | None:
    """The arguments for jax.distributed.initialize, or None for a single process. Flags win over environment."""
    given: dict[str, Any] = {
        'coordinator': coordinator or os.environ.get(ENV['coordinator']) or None,
        'num_processes': num_processes if num_processes is not None else os.environ.get(ENV['num_processes']),
        'process_id': process_id if process_id is not None else os.environ.get(ENV['process_id']),
    }
    if not any(v is not None for v in given.values()):
        return {} if auto else None  # {}: let JAX detect the cluster (TPU, SLURM, Open MPI)
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise ConfigError(
            f'multi-process training needs the coordinator address, the process count and this '
            f"process's id; missing: {', '.join(missing)} (flags --coordinator, --num-processes, "
            f'--process-id or the variables {", ".join(ENV[k] for k in missing)})'
        )
    try:
        count, index = int(given['num_processes']), int(given['process_id'])
    except ValueError:
        raise ConfigError(
            f'--num-processes and --process-id must be integers, got {given["num_processes"]!r} '
            f'and {given["process_id"]!r}'
        ) from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f'--process-id must be in 0..{count - 1} for {count} processes, got {index}')
    if ':' not in given['coordinator']:
        raise ConfigError(f"--coordinator must be HOST:PORT (process 0's address), got {given['coordinator']!r}")
    return {'coordinator_address': given['coordinator'], 'num_processes': count, 'process_id': index}


def initialize(**kwargs) -> None:
    """Joins the processes (a no-op for a single one). Must run before anything touches a JAX device."""
    arguments = settings(**kwargs)
    if arguments is None:
        return
    import jax

    jax.distributed.initialize(**arguments)
