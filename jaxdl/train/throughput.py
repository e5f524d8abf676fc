"""Training speed, measured on the host between two training records: images per second, time per step, the
share of that time spent waiting for the input pipeline, and model FLOPs utilisation (MFU) where the step's FLOPs
and the device's peak are known (jaxdl.train.costs).

The time between two records is taken where their metric sums were fetched, so it covers the device's work of
the steps between them however far the host ran ahead; evaluation and checkpoint time in between is left out
(`pause`)."""

from __future__ import annotations

import dataclasses
import time


@dataclasses.dataclass
class Throughput:
    batch_size: int  # global, every process's rows
    flops_per_device_step: float | None = None
    peak_flops_per_device: float | None = None
    _since: float | None = None
    _step: int = 0
    _waited: float = 0.0
    _paused: float = 0.0

    def start(self, step: int) -> None:
        """Measuring begins after `step` (the first step's compilation is not a training step's time)."""
        self._since, self._step, self._waited, self._paused = time.perf_counter(), step, 0.0, 0.0

    def waited(self, seconds: float) -> None:
        """The loop waited this long for a batch."""
        self._waited += seconds

    def pause(self, seconds: float) -> None:
        """Time that was not training (an evaluation, a checkpoint's write)."""
        self._paused += seconds

    def fields(self, step: int) -> dict:
        """The figures since the last call (or `start`), for the training record of `step`; {} before `start`."""
        if self._since is None or step <= self._step:
            return {}
        now = time.perf_counter()
        seconds, steps = max(now - self._since - self._paused, 1e-9), step - self._step
        out = {
            'step_time_s': seconds / steps,
            'images_per_s': steps * self.batch_size / seconds,
            'input_wait_share': min(self._waited / seconds, 1.0),
        }
        if self.flops_per_device_step and self.peak_flops_per_device:
            out['mfu'] = self.flops_per_device_step * steps / seconds / self.peak_flops_per_device
        self._since, self._step, self._waited, self._paused = now, step, 0.0, 0.0
        return out
