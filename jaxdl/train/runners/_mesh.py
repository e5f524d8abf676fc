"""What the two runners over a mesh share (`sharded.py`, `fsdp.py`): jit over a mesh of every device of every
process, batches split over its data-carrying axes."""

from __future__ import annotations

from functools import partial

import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl.train import sharding
from jaxdl.train.runners import PlacedBatch, RunnerSettings, StepRunner, check_divisible, feeding
from jaxdl.train.step import eval_step, train_step


def mesh_runner(kind: str, task, settings: RunnerSettings) -> StepRunner:
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
        steps['train'] = jax.jit(
            partial(train_step, task=task),
            donate_argnums=0,
            compiler_options=options,
            out_shardings=(jax.tree.map(lambda x: x.sharding, placed), replicated),
        )
        return placed

    def put(batch):  # this process's rows -> one global array (multi-process safe)
        check_divisible(batch, jax.local_device_count(), 'local devices')
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(rows, x), batch)

    feed = feeding(put)

    def train(state, batch):
        if 'train' not in steps:
            raise RuntimeError('place the state with runner.place_state before training')
        return steps['train'](state, feed(batch))

    def run_eval(state, batch):  # the prediction rows back to this process's own rows (the inverse of `put`)
        sums, predictions = evaluate(state, feed(batch))
        return sums, multihost_utils.global_array_to_host_local_array(predictions, mesh, rows.spec)

    def lower_train(state, batch):
        if 'train' not in steps:
            raise RuntimeError('place the state with runner.place_state before lowering the step')
        return steps['train'].lower(state, feed(batch))

    return StepRunner(
        kind,
        train,
        run_eval,
        place_state=place,
        host_state=lambda s: s,
        num_devices=jax.device_count(),
        state_shardings=shardings_of,
        mesh=mesh,
        lower_train=lower_train,
        place_batch=lambda batch: PlacedBatch(put(batch)),
    )
