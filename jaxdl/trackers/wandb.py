"""Weights & Biases (`pip install jaxdl[wandb]`): the flattened config, every record as step metrics (the test
figures into the run's summary, since W&B's steps only go forward), summary.json and progress.png as files.

The project is `tracking.project`, the run's name `tracking.run_name` (default: the workdir's name); W&B's own
variables choose the rest (WANDB_ENTITY, WANDB_MODE=offline, WANDB_DIR). Its files live in WORKDIR/wandb. A
resumed run continues the same W&B run (its id kept in WORKDIR/trackers.json); steps its killed predecessor had
already logged past the checkpoint are logged again and W&B keeps the first."""

from __future__ import annotations

import secrets

from jaxdl.errors import Preempted
from jaxdl.trackers import flat_config, run_name, save_id, saved_id, scalars
from jaxdl.train.hooks import Hook


class WandB(Hook):
    def __init__(self, run):
        import wandb

        run_id = saved_id(run.workdir, 'wandb')
        if run_id is None:
            run_id = secrets.token_hex(6)  # W&B's ids: letters and digits
            save_id(run.workdir, 'wandb', run_id)  # before init: a run killed during it resumes the same id
        self.run = wandb.init(
            project=run.config.tracking.project,
            name=run_name(run),
            id=run_id,
            resume='allow',
            dir=str(run.workdir),
            config=flat_config(run.config),
            settings=wandb.Settings(quiet=True),
        )

    def record(self, run, row):
        figures = scalars(row)
        if row['split'] == 'test':
            self.run.summary.update(figures)
        else:
            self.run.log(figures, step=row['step'])

    def after_summary(self, run, summary):
        for name in ('summary.json', 'progress.png'):
            if (run.workdir / name).exists():
                self.run.save(str(run.workdir / name), base_path=str(run.workdir), policy='now')

    def closed(self, run, error):
        self.run.finish(exit_code=0 if error is None or isinstance(error, Preempted) else 1)


TRACKER = WandB
