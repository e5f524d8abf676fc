"""`jaxdl sweep`: every combination of a grid of config values and of seeds, each its own run directory.

    jaxdl sweep digits_cnn --seeds 3 --grid optimizer.name=sgd,rmsprop,adam --workdir runs/opt

An ablation runs the experiment as it is and once with each `--ablate` (one or more KEY=VALUE, comma-separated,
applied together), e.g. `--ablate optimizer.ema_decay=0 --ablate dataset.augment.mixup_alpha=0,dataset.augment.
cutmix_alpha=0`: one component removed at a time rather than every combination (with a grid too: for each of its
combinations).

Each run is `jaxdl train EXPERIMENT --workdir DIR/<overrides> --config.KEY=VALUE ...` in a process of its own, so
a sweep is exactly the runs a user could start by hand, with their checkpoints, exact resume and records. Running
the same command again skips the finished runs and resumes the interrupted ones. `--parallel K` runs K at once,
each pinned to its share of the cores. Every grid key and value is checked against the config before any run
starts. `jaxdl compare DIR` tabulates the result; `tensorboard --logdir DIR` shows every run by its name.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from jaxdl.errors import ConfigError

# The cores a run started by `--parallel` may use, comma-separated: the run pins itself (jaxdl.cli.main, before
# XLA or tf.data start their thread pools), so the sweep needs no code between fork and exec.
AFFINITY_VARIABLE = 'JAXDL_CPU_AFFINITY'


@dataclasses.dataclass(frozen=True)
class SweepRun:
    overrides: tuple[tuple[str, object], ...]  # (key, value) in grid order, then ('seed', n)

    @property
    def name(self) -> str:
        """The run directory's name: its overrides, e.g. 'optimizer.name=adam,seed=1'."""
        text = ','.join(f'{k}={_text(v)}' for k, v in self.overrides)
        return text.replace('/', '_').replace(' ', '')

    def arguments(self) -> list[str]:
        return [f'--config.{k}={_text(v)}' for k, v in self.overrides]


def _text(value) -> str:
    return str(value) if isinstance(value, (str, int, float, bool)) else repr(value)


def parse_grid(entries: list[str]) -> dict[str, list]:
    """['optimizer.name=sgd,adam', 'optimizer.learning_rate=0.01,0.1'] -> {key: [values]}."""
    grid = {}
    for entry in entries:
        key, equals, values = entry.partition('=')
        if not equals or not key or not values:
            raise ConfigError(f'--grid {entry!r}: write KEY=VALUE1,VALUE2, e.g. optimizer.name=sgd,adam')
        grid[key] = [_value(text) for text in _split_values(values)]
    return grid


def _value(text: str):
    """A value as a Python literal where it is one ('0.1', '(8,16)', 'False'), else the text ('5 steps')."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _split_values(text: str) -> list[str]:
    """Commas separate values, except inside brackets: 'features=(8,16),(16,32)' has two values."""
    values, depth, current = [], 0, ''
    for char in text:
        if char in '([{':
            depth += 1
        elif char in ')]}':
            depth -= 1
        if char == ',' and depth == 0:
            values.append(current)
            current = ''
        else:
            current += char
    return values + [current]


def parse_ablations(entries: list[str]) -> list[tuple[tuple[str, object], ...]]:
    """['optimizer.ema_decay=0', 'a.x=0,a.y=0'] -> [(('optimizer.ema_decay', 0),), (('a.x', 0), ('a.y', 0))]."""
    ablations = []
    for entry in entries:
        overrides = []
        for part in _split_values(entry):
            key, equals, text = part.partition('=')
            if not equals or not key or not text:
                raise ConfigError(
                    f'--ablate {entry!r}: write KEY=VALUE, or several comma-separated, e.g. '
                    f'dataset.augment.mixup_alpha=0,dataset.augment.cutmix_alpha=0'
                )
            overrides.append((key, _value(text)))
        ablations.append(tuple(overrides))
    return ablations


def plan_runs(experiment: str, grid: dict[str, list], seeds: int, ablations=()) -> list[SweepRun]:
    """Every combination (of the grid, and the experiment as it is plus each ablation), each checked (key, type,
    value) against the experiment's config before any run."""
    if seeds < 1:
        raise ConfigError(f'--seeds must be at least 1, got {seeds}')
    if 'seed' in grid or any(key == 'seed' for ablation in ablations for key, _ in ablation):
        raise ConfigError('sweep seeds with --seeds N, not --grid seed=...')
    shared = sorted({key for ablation in ablations for key, _ in ablation} & set(grid))
    if shared:
        raise ConfigError(f'{", ".join(shared)}: both swept by --grid and set by --ablate; give each key to one')
    from jaxdl import config as config_lib

    base = config_lib.load_config_file(experiment)
    runs = []
    for values in itertools.product(*grid.values()):
        for variant, seed in itertools.product(((), *ablations), range(seeds)):
            run = SweepRun((*zip(grid, values), *variant, ('seed', seed)))
            config = config_lib.apply_updates(base.copy_and_resolve_references(), dict(run.overrides))
            config_lib.validate(config)
            runs.append(run)
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError('two runs of this grid would share a directory name; give each value its own text')
    return runs


def status(workdir: Path) -> str:
    """'finished', 'interrupted' (checkpoints, no summary) or 'new'."""
    if (workdir / 'summary.json').is_file():
        return 'finished'
    return 'interrupted' if (workdir / 'checkpoints').is_dir() else 'new'


def _cores(slot: int, slots: int) -> set[int] | None:
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else []
    if slots <= 1 or len(available) < slots:
        return None
    share = len(available) // slots
    return set(available[slot * share : (slot + 1) * share])


def _start(experiment: str, run: SweepRun, workdir: Path, cores: set[int] | None, log) -> subprocess.Popen:
    command = [
        sys.executable,
        '-m',
        'jaxdl',
        'train',
        experiment,
        '--workdir',
        str(workdir),
        '--no-progress',
        *run.arguments(),
    ]
    # Pinned to its cores: XLA and tf.data size their thread pools by the cores a process may use.
    env = {**os.environ, AFFINITY_VARIABLE: ','.join(map(str, sorted(cores)))} if cores else None
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)


def pin_to_assigned_cores() -> None:
    """Restricts this process to the cores `AFFINITY_VARIABLE` names, if set (a run of `jaxdl sweep --parallel`)."""
    cores = os.environ.get(AFFINITY_VARIABLE)
    if cores and hasattr(os, 'sched_setaffinity'):
        os.sched_setaffinity(0, {int(c) for c in cores.split(',')})


def _headline(workdir: Path) -> str:
    summary = json.loads((workdir / 'summary.json').read_text())
    test = summary.get('test') or {}
    shown = [(k, v) for k, v in test.items() if isinstance(v, float) and k != 'count'][:2]
    return ', '.join(f'test {k} {v:.4f}' for k, v in shown)


def sweep(
    experiment: str, grid: dict[str, list], seeds: int, workdir: str | Path, parallel: int = 1, echo=print, ablations=()
) -> list[dict]:
    """Runs (or resumes, or skips) every run of the grid (and ablations); returns one record per run."""
    root = Path(workdir).absolute()
    runs = plan_runs(experiment, grid, seeds, ablations)
    root.mkdir(parents=True, exist_ok=True)
    (root / 'sweep.json').write_text(
        json.dumps(
            {
                'experiment': str(Path(experiment).absolute()),
                'grid': grid,
                'ablations': [dict(a) for a in ablations],
                'seeds': seeds,
                'runs': [r.name for r in runs],
            },
            indent=2,
            default=str,
        )
    )
    records, queue, active = {}, list(enumerate(runs)), {}  # type: dict, list, dict[int, tuple]
    total = len(runs)
    while queue or active:
        while queue and len(active) < max(parallel, 1):
            index, run = queue.pop(0)
            directory = root / run.name
            before = status(directory)
            if before == 'finished':
                records[index] = {'run': run.name, 'status': 'finished', 'skipped': True}
                echo(f'[{index + 1}/{total}] {run.name}: finished before, skipped ({_headline(directory)})')
                continue
            slot = next(s for s in range(max(parallel, 1)) if s not in {a[3] for a in active.values()})
            directory.mkdir(parents=True, exist_ok=True)
            log = open(directory / 'sweep.log', 'a')
            process = _start(experiment, run, directory, _cores(slot, parallel), log)
            active[index] = (process, run, time.time(), slot, log, before)
            echo(f'[{index + 1}/{total}] {run.name}: {"resuming" if before == "interrupted" else "started"}')
        time.sleep(0.2)
        for index, (process, run, started, _slot, log, _before) in list(active.items()):
            code = process.poll()
            if code is None:
                continue
            log.close()
            del active[index]
            directory = root / run.name
            seconds = time.time() - started
            if code == 0:
                records[index] = {'run': run.name, 'status': 'finished', 'seconds': round(seconds, 1)}
                echo(f'[{index + 1}/{total}] {run.name}: done in {seconds:.0f} s ({_headline(directory)})')
            else:
                last = (directory / 'sweep.log').read_text().strip().splitlines()[-1:] or ['(no output)']
                records[index] = {'run': run.name, 'status': status(directory), 'exit_code': code}
                echo(
                    f'[{index + 1}/{total}] {run.name}: stopped with exit code {code} ({last[0][:200]}); '
                    f'run the same sweep command again to resume it'
                )
    return [records[i] for i in range(total)]
