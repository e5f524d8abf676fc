"""jax.pmap: a replica of the state per local device (the legacy data-parallel path)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl.train.runners import PMAP_AXIS, PlacedBatch, RunnerSettings, StepRunner, check_divisible, feeding
from jaxdl.train.step import eval_step, train_step


def RUNNER(task, settings: RunnerSettings) -> StepRunner:
    """JAX's older data-parallel API (since 0.8 itself built on jit(shard_map)): a replica of the state per local
    device along a leading axis. Kept as the legacy path; it compiles with XLA's default options."""
    del settings  # jax.pmap takes no compiler options, and runs over the local devices without a mesh
    devices = jax.local_devices()
    n = len(devices)
    # Metric sums are psummed, the same on every device: out_axes=None hands back one copy (slicing [0] out of
    # every leaf eagerly cost one dispatch a leaf a step; benchmarks/step_costs.py).
    train = jax.pmap(
        partial(train_step, task=task, axis_name=PMAP_AXIS), axis_name=PMAP_AXIS, donate_argnums=0, out_axes=(0, None)
    )
    evaluate = jax.pmap(partial(eval_step, task=task, axis_name=PMAP_AXIS), axis_name=PMAP_AXIS, out_axes=(None, 0))

    stacked = NamedSharding(Mesh(np.array(devices), (PMAP_AXIS,)), P(PMAP_AXIS))

    def split(batch):  # [rows] -> [devices, rows / devices], put where pmap reads it (no implicit transfer)
        check_divisible(batch, n, 'local devices')
        return jax.device_put(jax.tree.map(lambda x: x.reshape(n, x.shape[0] // n, *x.shape[1:]), batch), stacked)

    first = lambda tree: jax.tree.map(lambda x: x[0], tree)  # the state is identical on every device

    def replicate(state):  # one copy per local device along a leading axis, as pmap expects
        return jax.device_put(jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), state), stacked)

    feed = feeding(split)

    def run_eval(state, batch):
        sums, rows = evaluate(state, feed(batch))
        return sums, jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), rows)  # [devices, b] -> [rows]

    return StepRunner(
        'pmap',
        lambda state, batch: train(state, feed(batch)),
        run_eval,
        place_state=replicate,
        host_state=first,
        num_devices=n,
        lower_train=lambda state, batch: train.lower(state, feed(batch)),
        place_batch=lambda batch: PlacedBatch(split(batch)),
    )
