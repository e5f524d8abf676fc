"""The runners: how the pure steps of `train/step.py` are compiled, placed and fed on the devices present.

Each runner is one module of this package exporting `RUNNER`, a function (task, RunnerSettings) -> StepRunner,
named by `train.parallel` (`registry.RUNNERS` lists them from the files, so the config checks a name without
loading jax; an import path 'package.module:build' names a runner of your own):

    jit      one device
    pmap     JAX's older data-parallel API, a replica of the state per local device (the legacy path)
    sharded  jit over a mesh of every device of every process, the state replicated
    fsdp     jit over a mesh, the state split by the sharding rules (`train/sharding.py`)

`make_runner` builds the one a run names ('auto': `choose_parallel`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxdl.config import FSDP_MIN_SIZE, ConfigError, check_placement, state_splitting_keys
from jaxdl.registry import CPU_CONVOLUTIONS, RUNNERS
from jaxdl.train import sharding
from jaxdl.train.state import TrainState
from jaxdl.train.step import TrainMetrics

PMAP_AXIS = 'batch'


@dataclasses.dataclass(frozen=True)
class PlacedBatch:
    """A host batch already put where a runner's steps read it, with its sharding (`StepRunner.place_batch`)."""

    arrays: dict


def feeding(place: Callable[[dict], Any]) -> Callable[[Any], Any]:
    """A runner's batch -> what its compiled steps take: a `PlacedBatch`'s arrays as they are, a host batch put
    there by `place` now."""
    return lambda batch: batch.arrays if isinstance(batch, PlacedBatch) else place(batch)


@dataclasses.dataclass
class StepRunner:
    """Runs the pure steps on the devices present. Host batches go in; device metric sums come out.

    `state_shardings(abstract_state)` says where each leaf of a state lives (None: one device, or pmap's
    replicas); `place_state` puts a TrainState there, `host_state` gives it back as one TrainState (the device
    arrays themselves for mesh runners: a checkpoint writes each shard from where it lives). `lower_train` lowers
    the train step for a placed state and a host batch (optional: costs are measured only where it is given).
    `place_batch` starts a host batch's transfer to where the steps read it, and `train` and `eval` take either
    (the loop places batches ahead of the step: `train/prefetch.py`); a runner without it takes host batches.
    """

    kind: str
    train: Callable[[Any, dict], tuple[Any, TrainMetrics]]
    eval: Callable[[Any, dict], tuple[dict, dict]]  # -> (device metric sums, this process's prediction rows)
    place_state: Callable[[TrainState], Any]
    host_state: Callable[[Any], TrainState]
    num_devices: int
    state_shardings: Callable[[Any], Any] = lambda abstract_state: None
    mesh: Any = None
    # (placed state, host batch) -> the train step lowered for them (jax's Lowered): what jaxdl.train.costs compiles
    # to read the step's FLOPs and memory; its compilation is the one the loop's calls then reuse. None: unknown.
    lower_train: Callable[[Any, dict], Any] | None = None
    place_batch: Callable[[dict], Any] = lambda batch: batch

    @property
    def max_steps_in_flight(self) -> int | None:
        """How many dispatched steps may be queued before the loop waits for the oldest.

        XLA:CPU's in-process collectives deadlock when hundreds of multi-device steps are queued (seen with jax
        0.10.2: 400 pmapped steps on 2 CPU devices hang in an all-reduce rendezvous; 40 do not; waiting for step
        t-2 before dispatching step t never hung and costs nothing measurable). Accelerators queue freely."""
        if self.num_devices > 1 and jax.default_backend() == 'cpu':
            return 2
        return None


def choose_parallel(parallel: str, *, mesh: str = '', splits_state: bool = False) -> str:
    """The runner `parallel` names; 'auto' picks the one the other placement settings need: 'fsdp' where they
    split the state (sharding rules, an fsdp axis), 'sharded' where they name a mesh, else 'sharded' on several
    devices and 'jit' on one."""
    if parallel != 'auto':
        RUNNERS.import_path(parallel)  # a built-in's name or an import path, else a ConfigError naming the choices
        return parallel
    if splits_state or (mesh and 'fsdp' in sharding.parse_mesh(mesh)):
        return 'fsdp'
    if mesh:
        return 'sharded'
    return 'sharded' if jax.device_count() > 1 else 'jit'


# What XLA:CPU (jax 0.10) hands to YNNPACK by default, less convolutions: dots and reductions stay (YNNPACK's
# reductions carry BatchNorm: without them the ResNet step ran 0.89x).
_YNNPACK_WITHOUT_CONVOLUTIONS = 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'


def compiler_options(cpu_convolutions: str = 'eigen') -> dict | None:
    """XLA options for compiling the steps (`train.cpu_convolutions`); pass them to your own
    `jax.jit(..., compiler_options=...)` of `train_step` to compile it as fit() does.

    On a CPU, XLA (jax 0.10) hands convolutions to YNNPACK. Eigen's convolutions ran the digits CNN's train step
    1.3x faster (benchmarks/xla_cpu.py), so 'eigen' (the default) compiles the steps without them. The option is
    passed per compilation because XLA_FLAGS only take effect before the backend starts, and only on a CPU: it
    names a field of XLA:CPU's options. A jaxlib that no longer knows the option compiles with its defaults
    (one warning), rather than failing the run."""
    if cpu_convolutions not in CPU_CONVOLUTIONS:
        raise ValueError(f'cpu_convolutions must be one of {", ".join(CPU_CONVOLUTIONS)}, got {cpu_convolutions!r}')
    if cpu_convolutions == 'ynnpack' or jax.default_backend() != 'cpu':
        return None
    return _supported({'xla_cpu_experimental_ynn_fusion_type': _YNNPACK_WITHOUT_CONVOLUTIONS})


def _supported(options: dict) -> dict | None:
    """`options` if this jaxlib's XLA accepts them (one trivial compilation, once per process), else None."""
    key = tuple(sorted(options.items()))
    if key not in _SUPPORTED:
        try:
            jax.jit(lambda x: x + 1, compiler_options=options).lower(np.float32(0)).compile()
            _SUPPORTED[key] = True
        except Exception as e:  # an unknown option: XLA raises while compiling
            import warnings

            warnings.warn(
                f'XLA does not take the compiler options {options} ({str(e).splitlines()[0][:200]}); '
                f'compiling with its defaults',
                RuntimeWarning,
                stacklevel=3,
            )
            _SUPPORTED[key] = False
    return options if _SUPPORTED[key] else None


_SUPPORTED: dict = {}


@dataclasses.dataclass(frozen=True)
class RunnerSettings:
    """What a runner is built with beside the task: the XLA options of its compilations (None: XLA's defaults)
    and the placement settings (`train.mesh`, `train.sharding_rules`, `train.fsdp_min_size`)."""

    compiler_options: dict | None = None
    mesh: str = ''
    sharding_rules: tuple = ()
    fsdp_min_size: int = FSDP_MIN_SIZE


def make_runner(
    parallel: str,
    task,
    cpu_convolutions: str = 'eigen',
    *,
    mesh: str = '',
    sharding_rules=(),
    fsdp_min_size: int = FSDP_MIN_SIZE,
) -> StepRunner:
    """The runner `train.parallel` names. `cpu_convolutions`: see `compiler_options` (jit and mesh runners;
    jax.pmap takes no compiler options). `mesh`, `sharding_rules`, `fsdp_min_size`: see jaxdl.train.sharding."""
    check_placement(parallel, mesh, sharding_rules, fsdp_min_size)
    kind = choose_parallel(parallel, mesh=mesh, splits_state=bool(state_splitting_keys(sharding_rules, fsdp_min_size)))
    options = compiler_options(cpu_convolutions) if kind != 'pmap' else None  # jax.pmap takes none
    return RUNNERS.resolve(kind)(task, RunnerSettings(options, mesh, tuple(sharding_rules), fsdp_min_size))


def runner_for(train_cfg, task) -> StepRunner:
    """The runner a run's `train` config describes."""
    return make_runner(
        train_cfg.parallel,
        task,
        train_cfg.cpu_convolutions,
        mesh=train_cfg.mesh,
        sharding_rules=tuple(train_cfg.sharding_rules),
        fsdp_min_size=train_cfg.fsdp_min_size,
    )


def check_divisible(batch: dict, parts: int, what: str):
    rows = len(batch['valid'])
    if rows % parts:
        raise ConfigError(
            f'a batch of {rows} rows (per process) does not split across {parts} {what}; choose '
            f'train.batch_size and train.eval_batch_size divisible by {parts} per process'
        )
