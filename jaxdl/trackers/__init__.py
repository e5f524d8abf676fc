"""Trackers: where a run's records go besides metrics.jsonl (`train.trackers`), each a hook (jaxdl.train.hooks).

Each tracker is one module of this package exporting `TRACKER`, a function of the run (jaxdl.train.loop's
RunContext) returning a Hook, called on process 0 when the run starts (`registry.TRACKERS` lists them from the
files; an import path names your own):

    tensorboard  scalars of every record, the config on TensorBoard's HParams dashboard, the test as a table
    wandb        Weights & Biases: the flattened config, every record, summary.json and progress.png
    mlflow       MLflow: the same, into `tracking.mlflow_uri`

A tracker that fails (not installed, a bad URI, a server gone) is named once in a warning and dropped: training
goes on and metrics.jsonl, the checkpoints and the run's files are written as ever. A tracker keeps the id of its
run in WORKDIR/trackers.json, so a resumed run continues the same tracker run.
"""

from __future__ import annotations

import json
from pathlib import Path

from jaxdl import config as config_lib
from jaxdl.logging import write_json
from jaxdl.registry import TRACKERS
from jaxdl.train.hooks import MOMENTS, Hook, Hooks

IDS_FILE = 'trackers.json'
# pip extras that install a tracker's package: named in the warning when its import fails
EXTRAS = {'wandb': 'wandb', 'mlflow': 'mlflow'}


def scalars(row: dict) -> dict[str, float]:
    """A record's numbers as `split/name` (per-class figures `split/name/class`); lists and None left out."""
    out = {}
    for key, value in row.items():
        if key in ('step', 'epoch', 'split'):
            continue
        for part, number in value.items() if isinstance(value, dict) else [('', value)]:
            if isinstance(number, (int, float)) and not isinstance(number, bool):
                out[f'{row["split"]}/{key}' + (f'/{part}' if part else '')] = float(number)
    return out


def flat_config(config) -> dict[str, str | int | float | bool]:
    """The config as `section.key` parameters; tuples and None as their text."""
    flat = config_lib.flatten(json.loads(config_lib.to_json(config)))
    return {k: v if isinstance(v, (str, int, float, bool)) else json.dumps(v) for k, v in sorted(flat.items())}


def run_name(run) -> str:
    return run.config.tracking.run_name or run.workdir.name


def saved_id(workdir: Path, tracker: str) -> str | None:
    """The id of the tracker run this workdir's run logs to, if it started one."""
    path = Path(workdir) / IDS_FILE
    return json.loads(path.read_text()).get(tracker) if path.exists() else None


def save_id(workdir: Path, tracker: str, run_id: str) -> None:
    path = Path(workdir) / IDS_FILE
    ids = json.loads(path.read_text()) if path.exists() else {}
    write_json(path, {**ids, tracker: run_id})


class Dropping(Hook):
    """One tracker, on process 0 only; the first exception of any of its moments is named in one warning and
    drops it."""

    def __init__(self, name: str, build):
        self.name, self.build, self.tracker = name, build, None

    def _call(self, moment: str, run, *args) -> None:
        if not run.is_main or (self.tracker is None and moment != 'run_start'):
            return
        try:
            if moment == 'run_start':
                self.tracker = self.build(run)
            getattr(self.tracker, moment)(run, *args)
        except Exception as e:  # any failure of a tracker: warn once, drop it, train on
            self.tracker = None
            self.build = None
            hint = (
                f'; install it with `pip install jaxdl[{EXTRAS[self.name]}]`'
                if isinstance(e, ImportError) and self.name in EXTRAS
                else ''
            )
            reason = str(e).splitlines()[0][:300] if str(e) else ''
            run.note(
                f'warning: tracker {self.name!r} failed at {moment} ({type(e).__name__}: {reason}){hint}; it is '
                f'dropped for this run, training goes on, and the run directory keeps every record'
            )

    def run_start(self, run):
        if self.build is not None:
            self._call('run_start', run)


def _forwarding(moment: str):
    def call(self, run, *args):
        self._call(moment, run, *args)

    call.__name__ = moment
    return call


for _moment in MOMENTS:
    if _moment != 'run_start':
        setattr(Dropping, _moment, _forwarding(_moment))


def trackers(names) -> Hooks:
    """The trackers `train.trackers` names, each dropped on its first failure. They act on process 0 only."""
    return Hooks([Dropping(name, TRACKERS.resolve(name)) for name in names])
