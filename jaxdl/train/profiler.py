"""The profiler window (`train.profile = 'steps A-B'`): a jax.profiler trace of training steps A to B into the
run's TensorBoard directory (process 0) or tensorboard/process_I (the others), opened by TensorBoard's Profile
tab (`pip install tensorboard-plugin-profile`) or Perfetto. The loop annotates every step
(`StepTraceAnnotation('train', step_num=...)`), so the trace viewer shows them as steps.

A run resumed at or past A does not trace again: its window was traced (or began) before it stopped."""

from __future__ import annotations

import time

import jax

from jaxdl.config import ConfigError, parse_profile_window
from jaxdl.train.hooks import Hook


def trace_dir(run):
    index = jax.process_index()
    return run.workdir / 'tensorboard' / (f'process_{index}' if index else '')


class ProfileWindow(Hook):
    def __init__(self, first: int, last: int):
        self.first, self.last = first, last
        self.tracing, self.last_metrics = False, None

    @classmethod
    def from_config(cls, config) -> ProfileWindow | None:
        window = parse_profile_window(config.train.profile)
        return cls(*window) if window else None

    def run_start(self, run):
        if self.first > run.plan.total_steps:
            raise ConfigError(
                f"config key 'train.profile': the window starts at step {self.first}, after the run's "
                f'last step ({run.plan.total_steps}); choose steps within 1-{run.plan.total_steps}'
            )
        if run.resumed_from is not None and run.resumed_from >= self.first:  # (its steps are never dispatched again)
            run.note(
                f'not profiling: the run resumes from step {run.resumed_from}, past the start of '
                f'train.profile={run.config.train.profile!r}'
            )

    def before_dispatch(self, run, step):
        if step == self.first:
            path = trace_dir(run)
            path.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(str(path))
            self.tracing = True

    def after_dispatch(self, run, step, metrics):
        if self.tracing:
            self.last_metrics = metrics

    def after_step(self, run, step, evaluating):
        if self.tracing and step >= min(self.last, run.plan.total_steps):
            jax.block_until_ready(self.last_metrics)  # the window's device work inside the trace
            stopping = time.perf_counter()
            self._stop()
            run.throughput.pause(time.perf_counter() - stopping)  # writing the trace is no training step's time
            run.note(f'profile of steps {self.first}-{step} written to {trace_dir(run)}')

    def _stop(self):
        self.tracing, self.last_metrics = False, None
        jax.profiler.stop_trace()

    def closed(self, run, error):
        if self.tracing:  # stopped inside the window: what was traced is still written
            self._stop()
