"""Named points at which a test makes a training process kill itself (SIGKILL, nothing flushed or saved).

`JAXDL_KILL_AT=PHASE@STEP` (or `PHASE` for the phases without a step) arms one point:

    step@N        after step N's work, any save it started included (that save may still be in flight)
    saving@N      right after the save of step N is dispatched, while orbax writes it asynchronously
    saved@N       once the save of step N has committed
    validation@N  after the first batch of step N's validation has been dispatched
    test          after the first batch of the final test evaluation has been dispatched
    summary       after summary.json has been written

The resume tests use them to stop a run deterministically at each kind of point; unset, every call is one
dictionary lookup.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Callable, Iterable, Iterator

VARIABLE = 'JAXDL_KILL_AT'
# Process 0 hosts jax.distributed's coordination service: if it died first, a process still waiting for a
# barrier's answer (orbax's commit barrier) would abort with SIGABRT instead of reaching its own kill point.
LEADER_GRACE_S = 3.0


def at(phase: str, step: int | None = None, *, settle: Callable[[], None] | None = None) -> None:
    """SIGKILLs this process if JAXDL_KILL_AT names this point; `settle` runs first (e.g. wait for a save)."""
    armed = os.environ.get(VARIABLE)
    if armed and armed == (phase if step is None else f'{phase}@{step}'):
        if settle is not None:
            settle()
        import jax  # only when armed: the module stays importable without jax
        if jax.process_count() > 1 and jax.process_index() == 0:
            time.sleep(LEADER_GRACE_S)
        os.kill(os.getpid(), signal.SIGKILL)


def after_first(batches: Iterable, phase: str, step: int | None = None) -> Iterator:
    """The batches, with the point `phase@step` reached once the first of them has been taken."""
    for index, batch in enumerate(batches):
        yield batch
        if index == 0:
            at(phase, step)
