"""The run's records: metrics.jsonl, the console table and progress bar, JSON files.

Only the side effects live here; what is logged is decided by the loop. In a multi-process run only process 0
writes (the others get a RunLog with `enabled=False`).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import tqdm

# Notes of orbax and TFDS that say nothing a user can act on, and print machine paths into notebooks and logs:
# orbax's when a checkpoint is opened to read (every evaluate, predict and transfer) and when one item of a
# checkpoint is read on its own (transfer reads the state alone); TFDS' when it prepares a dataset whose folder it
# made a moment before.
HARMLESS_LIBRARY_NOTES = ('Given directory is read only', 'Metadata file does not exist', 'has no dataset_info.json')


class _HarmlessNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(note in record.getMessage() for note in HARMLESS_LIBRARY_NOTES)


def drop_harmless_library_notes() -> None:
    """Leaves the notes above out of the `absl` logger (orbax and TFDS log through it); its warnings stay."""
    absl = logging.getLogger('absl')
    if not any(isinstance(f, _HarmlessNotes) for f in absl.filters):
        absl.addFilter(_HarmlessNotes())


def display_path(path: str | os.PathLike) -> str:
    """A path as a message shows it: relative to the current directory when it lies under it or beside it
    (`runs/x`, `../runs/x`), under the home directory as `~/...`, else whole. Runs record paths absolute; what
    they print should read the same on any machine."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    if not relative.startswith(os.pardir + os.sep + os.pardir):
        return relative
    home = os.path.expanduser('~')
    if home not in ('', '/') and absolute.startswith(home + os.sep):
        return '~' + absolute[len(home) :]
    return absolute


PACKAGES = (
    'jax',
    'jaxlib',
    'flax',
    'optax',
    'orbax-checkpoint',
    'tensorflow',
    'tensorflow-cpu',
    'tensorflow-datasets',
    'ml-collections',
    'numpy',
    'jaxdl',
)
# The only fields allowed to differ between identical reruns (jaxdl.train.throughput adds the speed ones).
TIMING_KEYS = ('elapsed_s', 'step_time_s', 'images_per_s', 'input_wait_share', 'mfu')


def write_json(path: Path, obj) -> None:
    tmp = Path(path).with_suffix('.tmp')
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + '\n')
    os.replace(tmp, path)  # never leave a half-written file behind


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _git(*args, cwd) -> str | None:
    try:
        out = subprocess.run(['git', *args], cwd=cwd, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def environment_record(config) -> dict:
    """Everything needed to explain a difference between two runs' numbers."""
    import jax

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    source = Path(__file__).resolve().parent
    revision = _git('rev-parse', 'HEAD', cwd=source)
    dirty = _git('status', '--porcelain', cwd=source)
    return {
        'seed': config.seed,
        'versions': versions,
        'python': sys.version.split()[0],
        'platform': platform.platform(),
        'git_revision': revision,
        'git_dirty': bool(dirty) if revision else None,
        'command': sys.argv,
        'backend': jax.default_backend(),
        'devices': [str(d) for d in jax.devices()],
        'process_count': jax.process_count(),
        'xla_flags': os.environ.get('XLA_FLAGS', ''),
        # XLA's CPU kernels split their sums by the threads they get, so float results depend on the usable cores.
        'cpu_cores': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(),
    }


class RunLog:
    """Appends one JSON object per event to metrics.jsonl (the trackers, jaxdl.trackers, mirror it elsewhere)."""

    def __init__(self, workdir: Path, *, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(workdir) / 'metrics.jsonl'

    def truncate_after(self, step: int) -> None:
        """On resume: forget what the killed run logged after the checkpoint it resumes from."""
        if not self.enabled:
            return
        kept = [r for r in read_jsonl(self.path) if r['step'] <= step and r['split'] != 'test']
        self.path.write_text(''.join(json.dumps(r, sort_keys=True) + '\n' for r in kept))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open('a') as f:
            f.write(json.dumps(record, sort_keys=True) + '\n')


class Console:
    """Progress over the run's steps and, at each validation, one row of the training table.

    On a terminal the progress is a redrawn bar; elsewhere (CI logs, nohup, a notebook's captured output) it is a
    short line every `PROGRESS_EVERY` of the run, since a redrawn bar would fill such a log with its frames. All of
    it goes to stderr: stdout is kept for the commands' machine-readable results."""

    WIDTHS = (6, 10, 9, 11, 10, 9, 10, 11)
    PROGRESS_EVERY = 0.05

    def __init__(
        self,
        total_steps: int,
        initial_step: int,
        *,
        enabled: bool = True,
        progress: bool = True,
        metric: str = 'accuracy',
        stream=None,
    ):
        """`enabled`: this process reports at all (process 0); `progress`: also the progress and the table;
        `metric`: the task's column beside the loss (accuracy, rmse, ...)."""
        self.metric = metric
        self.stream = stream or sys.stderr
        short = {'accuracy': 'acc'}.get(metric, metric)
        self.columns = (
            'epoch',
            'iteration',
            'elapsed',
            'train loss',
            f'train {short}',
            'val loss',
            f'val {short}',
            'learn rate',
        )
        self.widths = tuple(max(w, len(c)) for w, c in zip(self.WIDTHS, self.columns))
        self.enabled = enabled
        self.progress = enabled and progress
        self.terminal = bool(getattr(self.stream, 'isatty', lambda: False)())
        self.bar = tqdm.tqdm(
            total=total_steps,
            initial=initial_step,
            unit='step',
            dynamic_ncols=True,
            file=self.stream,
            disable=not (self.progress and self.terminal),
            leave=False,
        )
        self.total, self.step, self.started, self.first_step = total_steps, initial_step, time.time(), initial_step
        self._next_report = self._report_after(initial_step)
        self._header_done = False

    def _report_after(self, step: int) -> int:
        every = max(math.ceil(self.total * self.PROGRESS_EVERY), 1)
        return (step // every + 1) * every

    def _write(self, text: str) -> None:
        tqdm.tqdm.write(text, file=self.stream)

    def _line(self, cells) -> str:
        return ' | '.join(str(c).rjust(w) for c, w in zip(cells, self.widths))

    def row(self, *, epoch, step, elapsed, train: dict, validation: dict, learning_rate: float) -> None:
        if not self.progress:
            return
        if not self._header_done:
            self._write(self._line(self.columns))
            self._write('-+-'.join('-' * w for w in self.widths))
            self._header_done = True
        known = lambda m, k: isinstance(m.get(k), (int, float))  # absent (e.g. mAP of a training row) or undefined
        num = lambda m, k: f'{m[k]:.4f}' if known(m, k) else '-'
        show = (lambda m, k: f'{100 * m[k]:.2f}%' if known(m, k) else '-') if self.metric.endswith('accuracy') else num
        self._write(
            self._line(
                (
                    epoch,
                    step,
                    time.strftime('%H:%M:%S', time.gmtime(elapsed)),
                    num(train, 'loss'),
                    show(train, self.metric),
                    num(validation, 'loss'),
                    show(validation, self.metric),
                    f'{learning_rate:.3g}',
                )
            )
        )

    def message(self, text: str) -> None:
        if self.enabled:
            self._write(text)

    def advance(self, steps: int = 1) -> None:
        self.step += steps
        if self.terminal:
            self.bar.update(steps)
        elif self.progress and self.step >= self._next_report:
            self._next_report = self._report_after(self.step)
            seconds = time.time() - self.started
            rate = (self.step - self.first_step) / seconds if seconds > 0 else 0.0
            left = (self.total - self.step) / rate if rate > 0 else 0.0
            self._write(
                f'step {self.step}/{self.total} ({100 * self.step / self.total:.0f}%), {rate:.1f} steps/s, '
                f'about {time.strftime("%H:%M:%S", time.gmtime(left))} left'
            )

    def close(self) -> None:
        self.bar.close()
