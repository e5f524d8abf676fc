"""One device: the steps jitted, donating the state."""

from __future__ import annotations

from functools import partial

import jax

from jaxdl.train.runners import PlacedBatch, RunnerSettings, StepRunner, feeding
from jaxdl.train.step import eval_step, train_step


def RUNNER(task, settings: RunnerSettings) -> StepRunner:
    options = settings.compiler_options
    device = jax.local_devices()[0]
    train = jax.jit(partial(train_step, task=task), donate_argnums=0, compiler_options=options)
    evaluate = jax.jit(partial(eval_step, task=task), compiler_options=options)
    put = lambda batch: jax.device_put(batch, device)
    feed = feeding(put)
    return StepRunner(
        'jit',
        lambda s, b: train(s, feed(b)),
        lambda s, b: evaluate(s, feed(b)),
        place_state=lambda s: jax.device_put(s, device),
        host_state=lambda s: s,
        num_devices=1,
        lower_train=lambda s, b: train.lower(s, feed(b)),
        place_batch=lambda b: PlacedBatch(put(b)),
    )
