"""Named points at which a test makes a training process kill itself (SIGKILL, nothing flushed or saved).

`JAXDL_KILL_AT=PHASE@STEP` (or `PHASE` for the phases without a step) arms one point:

    step@N        after step N's work, any save it started included (that save may still be in flight)
    saving@N      right after the save of step N is dispatched, while orbax writes it asynchronously
    saved@N       once the save of step N has committed
    validation@N  after the first batch of step N's validation has been dispatched
    test          after the first batch of the final test evaluation has been dispatched
    summary       after summary.json has been written

The resume tests use them to stop a run deterministically at each kind of point. The KillPoints hook
(jaxdl.train.hooks) acts at them; unset, a run has no such hook.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from jaxdl.train.hooks import Hook

VARIABLE = 'JAXDL_KILL_AT'
# Process 0 hosts jax.distributed's coordination service: if it died first, a process still waiting for a
# barrier's answer (orbax's commit barrier) would abort with SIGABRT instead of reaching its own kill point.
LEADER_GRACE_S = 3.0


def kill(settle: Callable[[], None] | None = None) -> None:
    """SIGKILLs this process; `settle` runs first (e.g. wait for a save). Called by the KillPoints hook
    below at the point JAXDL_KILL_AT names."""
    if settle is not None:
        settle()
    import jax  # only when armed: the module stays importable without jax

    if jax.process_count() > 1 and jax.process_index() == 0:
        time.sleep(LEADER_GRACE_S)
    os.kill(os.getpid(), signal.SIGKILL)


class KillPoints(Hook):
    """The hook that kills the process at the point JAXDL_KILL_AT names; `armed()` is None when the variable is
    unset, so a normal run has no such hook at all."""

    def __init__(self, point: str):
        self.point = point

    @classmethod
    def armed(cls) -> KillPoints | None:
        point = os.environ.get(VARIABLE)
        return cls(point) if point else None

    def _at(self, phase: str, step: int | None = None, settle=None) -> None:
        if self.point == (phase if step is None else f'{phase}@{step}'):
            kill(settle)

    def evaluation_batch(self, run, name, step, index):
        if index == 0 and name in ('validation', 'test'):
            self._at(name, step)

    def after_save(self, run, step):
        self._at('saving', step)
        self._at('saved', step, settle=run.checkpoints.wait)

    def end_of_step(self, run, step):
        self._at('step', step)

    def after_summary(self, run, summary):
        self._at('summary')
