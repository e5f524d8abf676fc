"""The runners: how the pure steps of `train/step.py` are compiled, placed and fed on the devices present.

    jit      one device
    pmap     JAX's older data-parallel API, a replica of the state per local device (the legacy path)
    sharded  jit over a mesh of every device of every process, the state replicated
    fsdp     jit over a mesh, the state split by the sharding rules (`train/sharding.py`)

`RUNNERS` maps each name `train.parallel` takes (`registry.PARALLEL`, where the config checks it without loading
jax) to the function that builds its `StepRunner`; `make_runner` looks one up ('auto': `choose_parallel`).
"""
from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxdl.config import FSDP_MIN_SIZE, ConfigError, check_placement, state_splitting_keys
from jaxdl.registry import CPU_CONVOLUTIONS, PARALLEL
from jaxdl.train import sharding
from jaxdl.train.state import TrainState
from jaxdl.train.step import TrainMetrics, eval_step, train_step

PMAP_AXIS = 'batch'



@dataclasses.dataclass
class StepRunner:
    """Runs the pure steps on the devices present. Host batches go in; device metric sums come out.

    `state_shardings(abstract_state)` says where each leaf of a state lives (None: one device, or pmap's
    replicas); `place_state` puts a TrainState there, `host_state` gives it back as one TrainState (the device
    arrays themselves for mesh runners: a checkpoint writes each shard from where it lives).
    """
    kind: str
    train: Callable[[Any, dict], tuple[Any, TrainMetrics]]
    eval: Callable[[Any, dict], tuple[dict, dict]]  # -> (device metric sums, this process's prediction rows)
    place_state: Callable[[TrainState], Any]
    host_state: Callable[[Any], TrainState]
    num_devices: int
    state_shardings: Callable[[Any], Any] = lambda abstract_state: None
    mesh: Any = None

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
    if parallel not in PARALLEL:
        raise ValueError(f"unknown parallel mode {parallel!r}; valid: {', '.join(PARALLEL)}")
    if parallel != 'auto':
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
        raise ValueError(f"cpu_convolutions must be one of {', '.join(CPU_CONVOLUTIONS)}, got {cpu_convolutions!r}")
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
            warnings.warn(f'XLA does not take the compiler options {options} ({str(e).splitlines()[0][:200]}); '
                          f'compiling with its defaults', RuntimeWarning, stacklevel=3)
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


def make_runner(parallel: str, task, cpu_convolutions: str = 'eigen', *, mesh: str = '', sharding_rules=(),
                fsdp_min_size: int = FSDP_MIN_SIZE) -> StepRunner:
    """The runner `train.parallel` names. `cpu_convolutions`: see `compiler_options` (jit and mesh runners;
    jax.pmap takes no compiler options). `mesh`, `sharding_rules`, `fsdp_min_size`: see jaxdl.train.sharding."""
    check_placement(parallel, mesh, sharding_rules, fsdp_min_size)
    kind = choose_parallel(parallel, mesh=mesh, splits_state=bool(state_splitting_keys(sharding_rules, fsdp_min_size)))
    options = compiler_options(cpu_convolutions) if kind != 'pmap' else None
    return RUNNERS[kind](task, RunnerSettings(options, mesh, tuple(sharding_rules), fsdp_min_size))


def runner_for(train_cfg, task) -> StepRunner:
    """The runner a run's `train` config describes."""
    return make_runner(train_cfg.parallel, task, train_cfg.cpu_convolutions, mesh=train_cfg.mesh,
                       sharding_rules=tuple(train_cfg.sharding_rules), fsdp_min_size=train_cfg.fsdp_min_size)


def _check_divisible(batch: dict, parts: int, what: str):
    rows = len(batch['valid'])
    if rows % parts:
        raise ConfigError(f'a batch of {rows} rows (per process) does not split across {parts} {what}; choose '
                          f'train.batch_size and train.eval_batch_size divisible by {parts} per process')


def jit_runner(task, settings: RunnerSettings) -> StepRunner:
    options = settings.compiler_options
    device = jax.local_devices()[0]
    train = jax.jit(partial(train_step, task=task), donate_argnums=0, compiler_options=options)
    evaluate = jax.jit(partial(eval_step, task=task), compiler_options=options)
    put = lambda batch: jax.device_put(batch, device)
    return StepRunner('jit', lambda s, b: train(s, put(b)), lambda s, b: evaluate(s, put(b)),
                      place_state=lambda s: jax.device_put(s, device), host_state=lambda s: s, num_devices=1)


def pmap_runner(task, settings: RunnerSettings) -> StepRunner:
    """JAX's older data-parallel API (since 0.8 itself built on jit(shard_map)): a replica of the state per local
    device along a leading axis. Kept as the legacy path; it compiles with XLA's default options."""
    del settings  # jax.pmap takes no compiler options, and runs over the local devices without a mesh
    devices = jax.local_devices()
    n = len(devices)
    # Metric sums are psummed, the same on every device: out_axes=None hands back one copy (slicing [0] out of
    # every leaf eagerly cost one dispatch a leaf a step; benchmarks/step_costs.py).
    train = jax.pmap(partial(train_step, task=task, axis_name=PMAP_AXIS), axis_name=PMAP_AXIS, donate_argnums=0,
                     out_axes=(0, None))
    evaluate = jax.pmap(partial(eval_step, task=task, axis_name=PMAP_AXIS), axis_name=PMAP_AXIS, out_axes=(None, 0))

    stacked = NamedSharding(Mesh(np.array(devices), (PMAP_AXIS,)), P(PMAP_AXIS))

    def split(batch):  # [rows] -> [devices, rows / devices], put where pmap reads it (no implicit transfer)
        _check_divisible(batch, n, 'local devices')
        return jax.device_put(jax.tree.map(lambda x: x.reshape(n, x.shape[0] // n, *x.shape[1:]), batch), stacked)

    first = lambda tree: jax.tree.map(lambda x: x[0], tree)  # the state is identical on every device

    def replicate(state):  # one copy per local device along a leading axis, as pmap expects
        return jax.device_put(jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), state), stacked)

    def run_eval(state, batch):
        sums, rows = evaluate(state, split(batch))
        return sums, jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), rows)  # [devices, b] -> [rows]

    return StepRunner('pmap', lambda state, batch: train(state, split(batch)), run_eval,
                      place_state=replicate, host_state=first, num_devices=n)


def sharded_runner(task, settings: RunnerSettings) -> StepRunner:
    """jit over a mesh of every device (of every process), the state replicated."""
    return _mesh_runner('sharded', task, settings)


def fsdp_runner(task, settings: RunnerSettings) -> StepRunner:
    """jit over a mesh of every device (of every process), the state split by the sharding rules."""
    return _mesh_runner('fsdp', task, settings)


def _mesh_runner(kind: str, task, settings: RunnerSettings) -> StepRunner:
    """Batches are split over every data-carrying axis of the mesh; XLA inserts the gathers and sums."""
    options, mesh_spec = settings.compiler_options, settings.mesh
    rules, min_size = settings.sharding_rules, settings.fsdp_min_size
    mesh = sharding.build_mesh(mesh_spec, default='fsdp=-1' if kind == 'fsdp' else 'data=-1')
    replicated, rows = NamedSharding(mesh, P()), sharding.batch_sharding(mesh)
    shardings_of = lambda abstract: sharding.state_shardings(abstract, mesh, rules, min_size, split=kind == 'fsdp')
    evaluate = jax.jit(partial(eval_step, task=task), out_shardings=(replicated, rows), compiler_options=options)
    # The state keeps the shardings it is placed with: train's output is pinned to them (with donation, in place).
    steps = {}

    def place(state):
        placed = jax.device_put(state, shardings_of(jax.eval_shape(lambda s: s, state)))
        steps['train'] = jax.jit(partial(train_step, task=task), donate_argnums=0, compiler_options=options,
                                 out_shardings=(jax.tree.map(lambda x: x.sharding, placed), replicated))
        return placed

    def put(batch):  # this process's rows -> one global array (multi-process safe)
        _check_divisible(batch, jax.local_device_count(), 'local devices')
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(rows, x), batch)

    def train(state, batch):
        if 'train' not in steps:
            raise RuntimeError('place the state with runner.place_state before training')
        return steps['train'](state, put(batch))

    def run_eval(state, batch):  # the prediction rows back to this process's own rows (the inverse of `put`)
        sums, predictions = evaluate(state, put(batch))
        return sums, multihost_utils.global_array_to_host_local_array(predictions, mesh, rows.spec)

    return StepRunner(kind, train, run_eval, place_state=place, host_state=lambda s: s,
                      num_devices=jax.device_count(), state_shardings=shardings_of, mesh=mesh)


# train.parallel's names -> the function building the runner; the names are registry.PARALLEL's, less 'auto'.
RUNNERS: dict[str, Callable[[Any, RunnerSettings], StepRunner]] = {
    'jit': jit_runner, 'pmap': pmap_runner, 'sharded': sharded_runner, 'fsdp': fsdp_runner}
