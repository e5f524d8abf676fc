"""The one timing loop the benchmarks use for a train step that threads its state: warm up, then dispatch for at
least `seconds` (and `min_steps`), optionally keeping at most `bound` steps in flight as fit() does on a CPU."""
from __future__ import annotations

import time

import jax


def images_per_s(run, state, data, batch, bound=None, seconds=2.0, min_steps=0) -> float:
    for _ in range(3):
        state, sums = run(state, data)
    jax.block_until_ready(sums)
    in_flight, steps, start = [], 0, time.perf_counter()
    while time.perf_counter() - start < seconds or steps < min_steps:
        state, sums = run(state, data)
        steps += 1
        if bound:
            in_flight.append(sums)
            if len(in_flight) > bound:
                jax.block_until_ready(in_flight.pop(0))
    jax.block_until_ready(sums)
    return steps * batch / (time.perf_counter() - start)
