"""The pure train and eval steps, and the three ways to run them: jit, pmap and sharded (jit over a mesh).

    train_step(state, batch, *, task, axis_name=None) -> (new_state, TrainMetrics)
    eval_step(state, batch, *, task, axis_name=None) -> (metric_sums, per_example_predictions)

`axis_name` set means "inside a mapped axis" (pmap or shard_map): the loss is normalised by the *global* count of
valid examples and gradients and metric sums are summed over the axis exactly once, so every device count computes
the same update as one device with the whole batch. Randomness comes from fold_in(state.rng, state.step) only.
"""
from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxdl.config import FSDP_MIN_SIZE, check_placement, state_splitting_keys
from jaxdl.registry import CPU_CONVOLUTIONS, PARALLEL
from jaxdl.train import sharding
from jaxdl.train.state import TrainState

PMAP_AXIS = 'batch'
# float32 holds step numbers exactly up to 2**24: "no non-finite step yet".
NO_STEP = float(2 ** 24)


@flax.struct.dataclass
class TrainMetrics:
    """What a train step returns beside the new state, and what the loop sums over steps: the task's metric sums,
    and apart from them how many steps had a non-finite loss or gradient (their updates were not applied) and the
    first such step (1-based, as the loop counts; NO_STEP when there was none)."""
    sums: dict
    nonfinite_steps: jax.Array
    first_nonfinite_step: jax.Array


def _psum(tree, axis_name):
    return jax.lax.psum(tree, axis_name) if axis_name else tree


def _forward(state: TrainState, params, batch, *, train: bool, axis_name, rng=None):
    """Model outputs and the updated non-param collections (batch statistics) when training."""
    mutable = list(state.model_state) if train and state.model_state else False
    out = state.apply_fn({'params': params, **state.model_state}, batch['image'], train=train,
                         axis_name=axis_name, rngs={'dropout': rng} if rng is not None else None, mutable=mutable)
    return out if mutable else (out, state.model_state)


def _device_varying(tree, axis_name):
    """Each leaf marked as varying over `axis_name` (a no-op outside shard_map's type checking).

    Under `shard_map` with check_vma=True (JAX's default) a replicated input is *invariant*, and the gradient of an
    invariant value arrives already summed over the axis (the transpose of its implicit broadcast is a psum).
    Differentiating with respect to a varying copy instead gives every API (pmap, shard_map with or without
    check_vma) the same per-device gradient, which the step then sums exactly once."""
    if not axis_name:
        return tree

    def vary(leaf):
        if axis_name in getattr(jax.typeof(leaf), 'vma', ()):
            return leaf
        return jax.lax.pcast(leaf, axis_name, to='varying')
    return jax.tree.map(vary, tree)


def train_step(state: TrainState, batch: dict, *, task, axis_name=None) -> tuple[TrainState, TrainMetrics]:
    rng = jax.random.fold_in(state.rng, state.step)
    if axis_name:  # each device draws its own dropout mask
        rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
    valid = batch['valid'].astype(jnp.float32)
    global_count = jnp.maximum(_psum(jnp.sum(valid), axis_name), 1.0)

    def loss_fn(params):
        outputs, model_state = _forward(state, params, batch, train=True, axis_name=axis_name, rng=rng)
        per_example = task.per_example_loss(outputs, batch)
        return jnp.sum(per_example * valid) / global_count, (outputs, per_example, model_state)

    (loss, (outputs, per_example, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        _device_varying(state.params, axis_name))
    grads = _psum(grads, axis_name)
    # A non-finite loss or gradient anywhere leaves parameters, optimizer and model state as they were (the step
    # counter still advances with the data); the loop stops or carries on as train.on_nonfinite says.
    finite = jnp.isfinite(_psum(loss, axis_name)) & _all_finite(grads)
    updated = state.apply_gradients(grads, model_state)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = updated.replace(params=keep(updated.params, state.params),
                                opt_state=keep(updated.opt_state, state.opt_state),
                                model_state=keep(updated.model_state, state.model_state))
    sums = _psum(task.train_metric_sums(outputs, batch, per_example), axis_name)
    sums = jax.tree.map(lambda m: jnp.where(finite, m, jnp.zeros_like(m)), sums)  # skipped steps count nothing
    return new_state, TrainMetrics(sums=sums, nonfinite_steps=1.0 - finite.astype(jnp.float32),
                                   first_nonfinite_step=jnp.where(finite, NO_STEP, (state.step + 1).astype(jnp.float32)))


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def eval_step(state: TrainState, batch: dict, *, task, axis_name=None) -> tuple[dict, dict]:
    """Metric sums (reduced over `axis_name`) and the task's per-example predictions for figures that cannot be
    summed (e.g. detection boxes for COCO mAP; {} for most tasks), one row per example of this shard."""
    outputs, _ = _forward(state, state.params, batch, train=False, axis_name=axis_name)
    per_example = task.per_example_loss(outputs, batch)
    return _psum(task.eval_metric_sums(outputs, batch, per_example), axis_name), task.eval_predictions(outputs, batch)


@jax.jit
def add_sums(a, b):
    """Metric sums of two batches added on the device, in one dispatch (an eager add is one dispatch a leaf)."""
    return jax.tree.map(jnp.add, a, b)


@jax.jit
def add_train_metrics(a: TrainMetrics, b: TrainMetrics) -> TrainMetrics:
    return TrainMetrics(sums=jax.tree.map(jnp.add, a.sums, b.sums), nonfinite_steps=a.nonfinite_steps + b.nonfinite_steps,
                        first_nonfinite_step=jnp.minimum(a.first_nonfinite_step, b.first_nonfinite_step))


def predict_step(state: TrainState, images, *, task):
    outputs, _ = _forward(state, state.params, {'image': images}, train=False, axis_name=None)
    return task.predict(outputs)


# ------------------------------------------------------------------------------------------------- wrappers


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


def make_runner(parallel: str, task, cpu_convolutions: str = 'eigen', *, mesh: str = '', sharding_rules=(),
                fsdp_min_size: int = FSDP_MIN_SIZE) -> StepRunner:
    """The runner `train.parallel` names. `cpu_convolutions`: see `compiler_options` (jit and mesh runners;
    jax.pmap takes no compiler options). `mesh`, `sharding_rules`, `fsdp_min_size`: see jaxdl.train.sharding."""
    check_placement(parallel, mesh, sharding_rules, fsdp_min_size)
    kind = choose_parallel(parallel, mesh=mesh, splits_state=bool(state_splitting_keys(sharding_rules, fsdp_min_size)))
    options = compiler_options(cpu_convolutions) if kind != 'pmap' else None
    if kind == 'jit':
        return _jit_runner(task, options)
    if kind == 'pmap':
        return _pmap_runner(task)
    return _mesh_runner(kind, task, options, mesh, sharding_rules, fsdp_min_size)


def runner_for(train_cfg, task) -> StepRunner:
    """The runner a run's `train` config describes."""
    return make_runner(train_cfg.parallel, task, train_cfg.cpu_convolutions, mesh=train_cfg.mesh,
                       sharding_rules=tuple(train_cfg.sharding_rules), fsdp_min_size=train_cfg.fsdp_min_size)


def _check_divisible(batch: dict, parts: int, what: str):
    rows = len(batch['valid'])
    if rows % parts:
        from jaxdl.errors import ConfigError
        raise ConfigError(f'a batch of {rows} rows (per process) does not split across {parts} {what}; choose '
                          f'train.batch_size and train.eval_batch_size divisible by {parts} per process')


def _jit_runner(task, options: dict | None) -> StepRunner:
    device = jax.local_devices()[0]
    train = jax.jit(partial(train_step, task=task), donate_argnums=0, compiler_options=options)
    evaluate = jax.jit(partial(eval_step, task=task), compiler_options=options)
    put = lambda batch: jax.device_put(batch, device)
    return StepRunner('jit', lambda s, b: train(s, put(b)), lambda s, b: evaluate(s, put(b)),
                      place_state=lambda s: jax.device_put(s, device), host_state=lambda s: s, num_devices=1)


def _pmap_runner(task) -> StepRunner:
    """JAX's older data-parallel API (since 0.8 itself built on jit(shard_map)): a replica of the state per local
    device along a leading axis. Kept as the legacy path; it compiles with XLA's default options."""
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


def _mesh_runner(kind: str, task, options: dict | None, mesh_spec: str, rules, min_size: int) -> StepRunner:
    """jit over a mesh of every device (of every process): 'sharded' replicates the state, 'fsdp' splits it by
    the sharding rules. Batches are split over every data-carrying axis; XLA inserts the gathers and sums."""
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
