"""MLflow (`pip install jaxdl[mlflow]`): the flattened config as parameters, every record as step metrics,
summary.json and progress.png as artifacts, in the experiment `tracking.project` of the tracking store
`tracking.mlflow_uri` ('' = MLFLOW_TRACKING_URI, else MLflow's default). A resumed run continues the same MLflow
run (its id kept in WORKDIR/trackers.json)."""

from __future__ import annotations

import re
import time

from jaxdl.errors import Preempted
from jaxdl.trackers import flat_config, run_name, save_id, saved_id, scalars
from jaxdl.train.hooks import Hook

BATCH = 100  # MLflow takes at most 100 parameters (and 1000 metrics) in one log_batch


def metric_name(name: str) -> str:
    """MLflow's names hold letters, digits, '_-. /' only: an extra split's 'train[:1000]/loss' becomes
    'train__1000_/loss'."""
    return re.sub(r'[^\w\-. /]', '_', name)


class MLflow(Hook):
    def __init__(self, run):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=run.config.tracking.mlflow_uri or None)
        run_id = saved_id(run.workdir, 'mlflow')
        if run_id is not None:
            self.client.update_run(run_id, status='RUNNING')
        else:
            project = run.config.tracking.project
            experiment = self.client.get_experiment_by_name(project)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(project)
            run_id = self.client.create_run(
                experiment_id, run_name=run_name(run), tags={'workdir': str(run.workdir)}
            ).info.run_id
            save_id(run.workdir, 'mlflow', run_id)
        self.run_id = run_id
        self._log_parameters(flat_config(run.config))

    def _log_parameters(self, parameters: dict) -> None:
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params  # a resumed run's are there already
        new = [Param(k, str(v)) for k, v in parameters.items() if k not in logged]
        for i in range(0, len(new), BATCH):
            self.client.log_batch(self.run_id, params=new[i : i + BATCH])

    def record(self, run, row):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(metric_name(name), value, now, row['step']) for name, value in scalars(row).items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def after_summary(self, run, summary):
        for name in ('summary.json', 'progress.png'):
            if (run.workdir / name).exists():
                self.client.log_artifact(self.run_id, str(run.workdir / name))

    def closed(self, run, error):
        status = 'FINISHED' if error is None else 'KILLED' if isinstance(error, Preempted) else 'FAILED'
        self.client.set_terminated(self.run_id, status=status)


TRACKER = MLflow
