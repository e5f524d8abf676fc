"""fit(): the epoch loop around the pure train step.

Training data updates the weights; the validation split is evaluated every `validate_every` steps and is the
only thing model selection and early stopping read; the test split is evaluated once, after training, on the
selected model and reported apart. Training into a workdir that has checkpoints resumes from the latest: the
step restores the RNG and the optimizer, the step number gives the epoch and the batches already seen.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import config as config_lib
from jaxdl import determinism, registry
from jaxdl.checkpoint import Checkpoints
from jaxdl.config import Plan
from jaxdl.data.pipeline import Pipeline
from jaxdl.errors import DataError, Preempted, TrainingDiverged
from jaxdl.logging import (
    Console,
    RunLog,
    display_path,
    drop_harmless_library_notes,
    environment_record,
    read_jsonl,
    write_json,
)
from jaxdl.plots import plot_progress
from jaxdl.trackers import trackers
from jaxdl.train import costs as costs_lib
from jaxdl.train.evaluators import after_training, during_training, selection_split
from jaxdl.train.guard import StopSignals, WorkdirLock, check_writable
from jaxdl.train.hooks import Hook, Hooks
from jaxdl.train.hooks import from_config as hooks_from_config
from jaxdl.train.kill_points import KillPoints
from jaxdl.train.prefetch import prefetch_to_device
from jaxdl.train.profiler import ProfileWindow
from jaxdl.train.runners import StepRunner, runner_for
from jaxdl.train.state import TrainState, state_from_config
from jaxdl.train.step import TrainMetrics, add_train_metrics
from jaxdl.train.throughput import Throughput

if TYPE_CHECKING:
    from ml_collections import ConfigDict

    from jaxdl.tasks import Task
    from jaxdl.train.evaluators import Evaluator
    from jaxdl.train.step import TrainMetrics


@dataclasses.dataclass
class LoopState:
    """What the loop carries from step to step and through a checkpoint (its `loop` item, as JSON): enough for a
    resumed run to continue exactly where the checkpointed one stood, early stopping and train records included."""

    best_step: int | None = None
    best_validation_loss: float | None = None
    validations_since_best: int = 0
    elapsed_s: float = 0.0
    stop_reason: str | None = None  # None while training; then 'completed' or 'early_stopping'
    skipped_updates: int = 0  # updates with a non-finite loss or gradient (train.on_nonfinite='skip')
    skipped_images: int = 0  # this process's training examples left out as corrupt (skip_corrupt_images)
    # The training metrics summed since the last train record, as JSON (float32 and int32 sums go through JSON
    # exactly), so a resumed run writes the records an uninterrupted one does.
    pending_train: dict | None = None

    @property
    def finished(self) -> bool:
        return self.stop_reason is not None

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), 'finished': self.finished}

    @classmethod
    def from_json(cls, record: dict) -> LoopState:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})

    def validated(self, step: int, loss: float, min_delta: float, patience: int) -> None:
        """Early stopping and model selection: validation loss only, an improvement must beat the best by
        min_delta, and `patience` validations without one stop the run (0: never)."""
        if self.best_validation_loss is None or loss < self.best_validation_loss - min_delta:
            self.best_step, self.best_validation_loss, self.validations_since_best = step, loss, 0
        else:
            self.validations_since_best += 1
            if patience and self.validations_since_best >= patience:
                self.stop_reason = 'early_stopping'


def _metrics_to_json(host: TrainMetrics) -> dict:
    return {
        'sums': {k: np.asarray(v).tolist() for k, v in host.sums.items()},  # (confusion matrices too)
        'nonfinite_steps': float(host.nonfinite_steps),
        'first_nonfinite_step': float(host.first_nonfinite_step),
    }


def _metrics_from_json(record: dict) -> TrainMetrics:
    def device_sum(
        value: Any,
    ) -> jax.Array:  # back with its step's dtype: int32 counts stay integers, float32 sums float32
        value = np.asarray(value)
        return jnp.asarray(value, jnp.int32 if value.dtype.kind in 'iu' else jnp.float32)

    return TrainMetrics(
        sums={k: device_sum(v) for k, v in record['sums'].items()},
        nonfinite_steps=jnp.float32(record['nonfinite_steps']),
        first_nonfinite_step=jnp.float32(record['first_nonfinite_step']),
    )


@dataclasses.dataclass
class FitResult:
    state: TrainState  # the selected model (best by validation, or last)
    summary: dict
    workdir: Path


def _environment(config: ConfigDict, pipeline: Pipeline, plan: Plan, parallel: str, transfer: dict | None) -> dict:
    """environment.json: versions, devices and git revision, plus what rebuilding the run needs (dataset
    shape and class names, the plan in steps) so evaluate/predict never re-read the dataset's metadata."""
    spec, d = pipeline.spec, config.dataset
    environment = environment_record(config)
    environment['dataset'] = {
        'name': spec.name,
        'num_classes': spec.num_classes,
        'image_shape': list(spec.image_shape),
        'class_names': list(spec.class_names),
        'sizes': {s: pipeline.size(s) for s in (d.train_split, d.validation_split, d.test_split)},
        'source': pipeline.source.name,
    }
    fingerprints = pipeline.fingerprints((d.train_split, d.validation_split, d.test_split))
    if fingerprints:
        environment['dataset']['fingerprints'] = fingerprints
    environment['plan'] = dataclasses.asdict(plan)
    environment['code_paths'] = registry.code_roots(config)
    environment['parallel'] = parallel
    environment['deterministic'] = determinism.record(config.train.deterministic)
    if transfer:
        environment['transfer'] = transfer
    return environment


def _record_run(workdir: Path, config: ConfigDict, environment: dict, has_checkpoints: bool) -> None:
    """config.json and environment.json; a resumed run must have the config it started with, but for where its
    arrays live (config.PLACEMENT_KEYS: another device count, mesh or parallel mode) and what watches it
    (config.INSTRUMENT_KEYS: trackers, hooks, a profile window)."""
    config_path = workdir / 'config.json'
    new = json.loads(config_lib.to_json(config))
    if has_checkpoints and config_path.exists():
        old = json.loads(config_path.read_text())
        flat_old, flat_new = config_lib.flatten(old), config_lib.flatten(new)
        changed = sorted(
            k
            for k in set(flat_old) | set(flat_new)
            if flat_old.get(k) != flat_new.get(k) and k not in config_lib.PLACEMENT_KEYS + config_lib.INSTRUMENT_KEYS
        )
        if changed:
            raise config_lib.ConfigError(
                f'{workdir} holds a run trained with a different config ({", ".join(changed)} differ); '
                f'resume with the recorded config (`jaxdl rerun`) or train into a new --workdir'
            )
    environment_path = workdir / 'environment.json'
    if has_checkpoints and environment_path.exists():
        _check_same_data(json.loads(environment_path.read_text()).get('dataset', {}), environment['dataset'], workdir)
    write_json(config_path, new)
    write_json(workdir / 'environment.json', environment)


def _check_same_data(started: dict, now: dict, workdir: Path) -> None:
    """A resumed streaming run reads examples by index: if the record files changed since it started, the same
    indices are other examples, so it stops here (its checkpoints untouched)."""
    before, after = started.get('fingerprints'), now.get('fingerprints')
    if before and after and before != after:
        changed = sorted(s for s in set(before) | set(after) if before.get(s) != after.get(s))
        raise DataError(
            f'the files of dataset {now["name"]!r} changed since the run in {workdir} started (splits '
            f'{", ".join(changed)}: fingerprint {", ".join(str(before.get(s)) for s in changed)} then, '
            f'{", ".join(str(after.get(s)) for s in changed)} now), so its example indices no longer '
            f'name the same examples. Restore the files it started with to resume, or train into a new '
            f'--workdir. Its checkpoints are untouched.'
        )


def fit(
    config: ConfigDict, workdir: str | Path, *, show_progress: bool = True, hooks: Sequence[Hook] = ()
) -> FitResult:
    """Trains `config` into `workdir` (resuming from its latest checkpoint) and returns the selected model.

    With `transfer.init_from` the run starts from another run's weights (see jaxdl.transfer); with
    `transfer.compare_with_scratch` the same budget is also trained from scratch into WORKDIR/from_scratch and
    both test results are reported side by side in summary.json under `comparison`. `hooks`
    (jaxdl.train.hooks.Hook) are called at the loop's named moments, after its own (records, trackers, profiler),
    then those `train.hooks` names."""
    config = config_lib.validate(config)
    drop_harmless_library_notes()  # in a notebook or a script as on the command line
    hooks = (*hooks, *hooks_from_config(config))  # a path that does not import or is no hook: here, before any step
    determinism.request(config.train.deterministic)  # before fit's first JAX computation starts the backend
    if config.transfer.init_from:  # recorded absolute, so a rerun from anywhere finds the same source
        config = copy.deepcopy(config)
        config.transfer.init_from = str(Path(config.transfer.init_from).absolute())
    result = _fit(config, Path(workdir).absolute(), show_progress, tuple(hooks))
    if config.transfer.init_from and config.transfer.compare_with_scratch:
        result = _compare_with_scratch(config, result, show_progress, tuple(hooks))
    return result


def _compare_with_scratch(
    config: ConfigDict, result: FitResult, show_progress: bool, hooks: tuple[Hook, ...]
) -> FitResult:
    from jaxdl.transfer import scratch_baseline_config

    scalars = lambda metrics: {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    scratch_dir = result.workdir / 'from_scratch'
    Console(0, 0, enabled=jax.process_index() == 0, progress=False).message(
        f'training the from-scratch baseline with the same budget into {display_path(scratch_dir)}'
    )
    baseline = _fit(scratch_baseline_config(config), scratch_dir, show_progress, hooks)
    summary = {
        **result.summary,
        'comparison': {
            'fine_tuned': scalars(result.summary['test']),
            'from_scratch': scalars(baseline.summary['test']),
            'from_scratch_workdir': str(scratch_dir),
            'source': config.transfer.init_from,
        },
    }
    if jax.process_index() == 0:
        write_json(result.workdir / 'summary.json', summary)
    return dataclasses.replace(result, summary=summary)


def _fit(config: ConfigDict, workdir: Path, show_progress: bool, hooks: tuple[Hook, ...]) -> FitResult:
    """One run in one workdir, which it holds (a lock) while it trains there."""
    lock = None
    if jax.process_index() == 0:
        check_writable(workdir)
        lock = WorkdirLock(workdir).acquire()
        if lock.taken_over:
            Console(0, 0, progress=False).message(
                f'took over {lock.path.name} from a run that is no longer alive (pid {lock.taken_over.get("pid")})'
            )
    try:
        return _fit_holding_lock(config, workdir, show_progress, hooks)
    finally:
        if lock:
            lock.release()


@dataclasses.dataclass
class RunContext:
    """What every phase of one run reads: its settings, data, step runner, records and the loop's own state.
    Hooks and evaluators receive it (`run`)."""

    config: config_lib.ConfigDict
    workdir: Path
    environment: dict  # environment.json's content (with `costs` once measured); process 0
    pipeline: Pipeline
    task: Task
    plan: Plan
    runner: StepRunner
    schedule: Callable[[int], float]
    checkpoints: Checkpoints
    log: RunLog
    state: TrainState  # on the host: initialised, transferred, then restored
    hooks: Hooks  # the loop's own TrainRecords first, then the user's, then kill points
    records: TrainRecords
    throughput: Throughput
    loop: LoopState = dataclasses.field(default_factory=LoopState)
    resumed_from: int | None = None  # the checkpoint's step, when a run resumes
    console: Console | None = None
    is_main: bool = True

    def write_record(self, row: dict) -> None:
        """A row of metrics.jsonl, then every hook's `record` (the trackers mirror it)."""
        self.log.write(row)
        self.hooks.record(self, row)

    def note(self, text: str) -> None:
        """A line on the console (stderr) from process 0, before or during training."""
        (self.console or Console(0, 0, enabled=self.is_main, progress=False)).message(text)

    def row_fields(self, step: int) -> dict:
        return {'step': step, 'epoch': step / self.plan.steps_per_epoch, 'elapsed_s': self.loop.elapsed_s}


def _fit_holding_lock(config: ConfigDict, workdir: Path, show_progress: bool, hooks: tuple[Hook, ...]) -> FitResult:
    """The phases of a run: open it, resume, train, select, test, summarize."""
    run, transfer_message = _open_run(config, workdir, hooks)
    error = None
    try:
        _resume(run)
        if run.loop.finished and (workdir / 'summary.json').exists():
            return _finished_before(run)
        run.console = Console(
            run.plan.total_steps,
            int(run.state.step),
            enabled=run.is_main,
            progress=show_progress,
            metric=run.task.headline[1],
        )
        if transfer_message:
            run.note(transfer_message)
        # Whatever a stopped run logged after the checkpoint this run starts from (all of it, when it stopped
        # before its first checkpoint) is trained and logged again.
        run.log.truncate_after(run.resumed_from or 0)
        if run.resumed_from is not None:
            run.note(f'resuming {display_path(workdir)} from step {run.resumed_from}')
        run.hooks.run_start(run)
        with StopSignals() as stop:
            final_state = run.runner.host_state(_train(run, stop))
        run.checkpoints.wait()
        selected_step, selected = _select(run, final_state)
        tests = _test(run, selected, selected_step)
        return FitResult(selected, _summarize(run, selected_step, int(final_state.step), tests), workdir)
    except BaseException as e:
        error = e
        raise
    finally:
        try:
            run.hooks.closed(run, error)
        except Exception:
            if error is None:  # a hook's failure to close never hides the run's own error
                raise
        finally:
            if run.console:
                run.console.close()
            run.checkpoints.close()


def _open_run(config: ConfigDict, workdir: Path, hooks: tuple[Hook, ...]) -> tuple[RunContext, str | None]:
    """The run's data, plan, runner and initial (or transferred) state; its records written, its checkpoints
    opened. Every split the run reads is opened (and sized) first, before anything runs in another thread: a
    missing split fails here, and tfds.testing.mock_data, which redirects the whole process's file system while
    a split opens, cannot redirect the listing orbax's checkpoint manager starts in its own thread when created."""
    is_main = jax.process_index() == 0
    pipeline = Pipeline.for_config(config, process_index=jax.process_index(), process_count=jax.process_count())
    d = config.dataset
    for split in (d.train_split, d.validation_split, d.test_split, *config.eval.splits):
        pipeline.size(split)
    spec, task = pipeline.spec, pipeline.task
    plan = Plan.resolve(config, pipeline.steps_per_epoch(config.train.batch_size))
    runner = runner_for(config.train, task)
    state, schedule = state_from_config(
        config, task, image_shape=spec.image_shape, plan=plan, shardings=runner.state_shardings
    )
    if is_main:  # two latest + best + one being written, before any step rather than at the first failed save
        check_writable(workdir, needed_bytes=4 * sum(x.nbytes for x in jax.tree.leaves(state.to_checkpoint())))
    checkpoints = Checkpoints(workdir / 'checkpoints')
    latest = checkpoints.latest_step()
    transfer, transfer_message = None, None
    if config.transfer.init_from and latest is None:  # a resumed run has the transferred weights in its checkpoint
        from jaxdl.transfer import initialize_from

        state, report = initialize_from(state, config.transfer, config.model)
        state = state.with_ema_of_weights()  # the EMA starts at the transferred weights
        transfer, transfer_message = report.as_record(), report.describe()
    elif config.transfer.init_from and (workdir / 'environment.json').exists():
        transfer = json.loads((workdir / 'environment.json').read_text()).get('transfer')
    environment = {}  # (process 0 writes the run's records: only it reads versions, git and file fingerprints)
    if is_main:
        environment = _environment(config, pipeline, plan, runner.kind, transfer)
        _record_run(workdir, config, environment, latest is not None)
    kill, records, profile = KillPoints.armed(), TrainRecords(), ProfileWindow.from_config(config)
    own = [records, ConsoleRows(), trackers(config.train.trackers), *([profile] if profile else [])]
    run = RunContext(
        config,
        workdir,
        environment,
        pipeline,
        task,
        plan,
        runner,
        schedule,
        checkpoints,
        RunLog(workdir, enabled=is_main),
        state,
        Hooks([*own, *hooks, *([kill] if kill else [])]),
        records,
        resumed_from=latest,
        is_main=is_main,
        throughput=Throughput(config.train.batch_size),
    )
    return run, transfer_message


def _resume(run: RunContext) -> None:
    """From the newest intact checkpoint, if there is one: its state and the loop's record (a damaged newest one
    is set aside, see Checkpoints.restore_newest_intact)."""
    if run.resumed_from is None:
        return
    warn = lambda text: run.note(f'warning: {text}')
    restored = run.checkpoints.restore_newest_intact(run.state.to_checkpoint(), warn)
    assert restored is not None  # resumed_from names a checkpoint that exists
    run.resumed_from, tree, record = restored
    run.state, run.loop = run.state.from_checkpoint(tree), LoopState.from_json(record)


def _finished_before(run: RunContext) -> FitResult:
    summary = json.loads((run.workdir / 'summary.json').read_text())
    run.note(
        f'{display_path(run.workdir)} holds a finished run ({summary["stop_reason"]} at step {summary["final_step"]}); '
        f'not training or testing again. Train into a new --workdir to start over.'
    )
    assert run.resumed_from is not None  # summary.json is written after the last checkpoint
    selected = _restored(run, run.state, summary['selected_step'], run.resumed_from)
    return FitResult(selected, summary, run.workdir)


def _select(run: RunContext, final_state: TrainState) -> tuple[int, TrainState]:
    """The checkpoint test is run on: the best by validation loss (train.select='best'; 'best_ema': by the EMA
    weights'), or the last."""
    best = run.loop.best_step
    step = best if run.config.train.select != 'last' and best is not None else int(final_state.step)
    return step, _restored(run, final_state, step, int(final_state.step))


def _restored(run: RunContext, state: TrainState, step: int, current_step: int) -> TrainState:
    if step == current_step:
        return state
    tree, _ = run.checkpoints.restore(step, state.to_checkpoint())
    return state.from_checkpoint(tree)


def _test(run: RunContext, selected: TrainState, selected_step: int) -> dict[str, dict]:
    """The test split, once, on the selected checkpoint: {'test': figures[, 'test_ema': its EMA's]}."""
    device_state, tests = run.runner.place_state(selected), {}
    for evaluator in after_training(run.config):
        tests[evaluator.name] = evaluator(run, device_state, None)
        run.write_record(
            {
                'step': selected_step,
                'epoch': selected_step / run.plan.steps_per_epoch,
                'split': evaluator.name,
                **tests[evaluator.name],
            }
        )
    return tests


def _summarize(run: RunContext, selected_step: int, final_step: int, tests: dict[str, dict]) -> dict:
    """summary.json, written last: its presence says the run is complete."""
    config, task = run.config, run.task
    summary = _summary(config, run.plan, run.loop, selected_step, final_step, run.log.path, tests)
    if run.is_main:
        plot_progress(
            read_jsonl(run.log.path),
            run.workdir / 'progress.png',
            title=f'{run.pipeline.spec.name}: {config.model.name}',
            metrics=task.headline[:2],
            selected_step=selected_step,
        )
        write_json(run.workdir / 'summary.json', summary)
        run.hooks.after_summary(run, summary)
    for name, test in tests.items():
        run.note(f'{name} ({config.dataset.test_split}, step {selected_step}): ' + _headline(task, test))
    return summary


def _headline(task: Task, metrics: dict) -> str:
    return ', '.join(f'{k} {v:.4f}' for k, v in metrics.items() if k in task.headline and isinstance(v, (int, float)))


def _stop_requested(stop: StopSignals, step: int, plan: Plan) -> bool:
    """Whether to stop after this step for SIGTERM/SIGINT. Several processes must stop (and save) at the same
    step, so there they agree at every log step through one small all-gather; one process looks every step."""
    if jax.process_count() == 1:
        return stop.received is not None
    if step % plan.log_every:
        return False
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.int32(stop.received is not None))))


def _check_finite(metrics: TrainMetrics, run: RunContext) -> None:
    """The one place a non-finite step is noticed, on training metrics fetched to the host anyway (no per-step
    sync). Such a step's update was not applied (see train_step). With on_nonfinite='stop' the run stops here,
    before any checkpoint is written from this point on; with 'skip' the count is kept and reported."""
    skipped = int(metrics.nonfinite_steps)
    if not skipped:
        return
    first = int(metrics.first_nonfinite_step)
    if run.config.train.on_nonfinite == 'stop':
        latest = run.checkpoints.latest_step()
        raise TrainingDiverged(
            f'non-finite loss or gradient at step {first}: training stopped (that update was not applied). '
            f'The last checkpoint ({f"step {latest}" if latest is not None else "none yet"}) is intact. Lower '
            f'optimizer.learning_rate, set optimizer.clip_global_norm, or set train.on_nonfinite=skip.'
        )
    run.loop.skipped_updates += skipped
    run.note(
        f'skipped {skipped} update(s) with a non-finite loss or gradient (first at step {first}; '
        f'{run.loop.skipped_updates} in this run)'
    )


class TrainRecords(Hook):
    """The training rows of metrics.jsonl: metrics summed on the device every step, written every `log_every`
    steps and at each evaluation, and carried through a checkpoint (LoopState.pending_train) when one falls
    between two rows.

    A log step's row waits until the next step is dispatched: fetching its sums then finds them ready and the
    device busy, instead of idle while the host summarises and writes (benchmarks/README.md). Rows at evaluation
    steps are written at once (those sync anyway), and a waiting row is on disk before the checkpoint that
    follows it."""

    def __init__(self) -> None:
        self.sums: TrainMetrics | None = None
        self.deferred: tuple[TrainMetrics, dict] | None = None
        self.latest: tuple[dict, float | None] = ({}, None)  # the last row's metrics and learning rate

    def resume(self, loop: LoopState) -> None:
        self.sums = _metrics_from_json(loop.pending_train) if loop.pending_train else None

    def _write(self, run: RunContext, sums: TrainMetrics, fields: dict) -> None:
        host = jax.device_get(sums)
        _check_finite(host, run)
        metrics = run.task.summarize(host.sums)
        rate = float(run.schedule(fields['step'] - 1))  # the rate this step used
        run.write_record(
            {**fields, 'split': 'train', 'learning_rate': rate, **metrics, **run.throughput.fields(fields['step'])}
        )
        self.latest = (metrics, rate)

    def _flush(self, run: RunContext) -> None:
        if self.deferred is not None:
            self._write(run, *self.deferred)
            self.deferred = None

    def after_dispatch(self, run: RunContext, step: int, metrics: TrainMetrics) -> None:
        self._flush(run)
        self.sums = metrics if self.sums is None else add_train_metrics(self.sums, metrics)

    def after_step(self, run: RunContext, step: int, evaluating: bool) -> None:
        assert self.sums is not None  # after_dispatch summed this step's metrics
        if evaluating:
            self._write(run, self.sums, run.row_fields(step))
            self.sums = None
        elif step % run.plan.log_every == 0:  # (never the last step: that one evaluates, so nothing stays deferred)
            self.deferred, self.sums = (self.sums, run.row_fields(step)), None

    def before_save(self, run: RunContext, step: int) -> None:
        self._flush(run)
        pending = jax.device_get(self.sums) if self.sums is not None else None  # fetched once
        if pending is not None and run.config.train.on_nonfinite == 'stop':  # never save past a non-finite step
            _check_finite(pending, run)
        run.loop.pending_train = _metrics_to_json(pending) if pending is not None else None


def _train(run: RunContext, stop: StopSignals) -> TrainState:
    """The epoch loop: trains from the state's step until the plan's end or early stopping, updating `run.loop`;
    returns the device state at the end of training."""
    config, plan, loop, runner, hooks = run.config, run.plan, run.loop, run.runner, run.hooks
    run.records.resume(loop)
    device_state = runner.place_state(run.state)
    step = int(run.state.step)
    started = time.time() - loop.elapsed_s
    evaluators = during_training(config, plan)
    in_flight: collections.deque = (
        collections.deque()
    )  # recent steps' metrics: bounds the dispatch queue (see StepRunner)
    first_batch = True
    batches = prefetch_to_device(
        run.pipeline.train_batches(seed=config.seed, global_batch=config.train.batch_size, start_step=step),
        runner.place_batch,
    )
    while step < plan.total_steps and not loop.finished:
        with jax.profiler.StepTraceAnnotation('train', step_num=step + 1):  # the trace viewer's steps
            waiting = time.perf_counter()
            batch, placed = next(batches)
            run.throughput.waited(time.perf_counter() - waiting)
            if first_batch:
                first_batch = False
                _measure_costs(run, device_state, batch)
                hooks.train_start(run, device_state, batch)
                run.throughput.start(step)
            loop.skipped_images += batch['valid'].size - int(batch['valid'].sum())  # dataset.skip_corrupt_images
            hooks.before_dispatch(run, step + 1)
            device_state, metrics = runner.train(device_state, placed)
        hooks.after_dispatch(run, step + 1, metrics)
        if runner.max_steps_in_flight:
            in_flight.append(metrics)
            if len(in_flight) > runner.max_steps_in_flight:
                jax.block_until_ready(in_flight.popleft())
        step += 1
        loop.elapsed_s = time.time() - started
        due = [evaluator for evaluator in evaluators if evaluator.due(step, plan)]
        hooks.after_step(run, step, bool(due))
        pausing = time.perf_counter()
        for evaluator in due:
            _evaluate_while_training(run, evaluator, device_state, step)
        if step == plan.total_steps and not loop.finished:
            loop.stop_reason = 'completed'
        stopping = not loop.finished and _stop_requested(stop, step, plan)
        validated = any(evaluator.name == 'validation' for evaluator in due)  # so 'best' is always on disk
        if validated or step % plan.checkpoint_every == 0 or loop.finished or stopping:
            hooks.before_save(run, step)
            run.checkpoints.save(step, runner.host_state(device_state).to_checkpoint(), loop.to_json(), loop.best_step)
            hooks.after_save(run, step)
        run.throughput.pause(time.perf_counter() - pausing)
        if stopping:
            run.checkpoints.wait()
            raise Preempted(
                f'{stop.received or "a stop signal (on another process)"} received: stopped after step '
                f'{step} and saved a checkpoint there; run the same command again to resume'
            )
        hooks.end_of_step(run, step)
    if loop.stop_reason == 'early_stopping':
        run.note(
            f'early stopping at step {step}: validation loss has not improved for '
            f'{config.train.early_stopping.patience} validations (best {loop.best_validation_loss:.4f} at step '
            f'{loop.best_step})'
        )
    return device_state


def _evaluate_while_training(run: RunContext, evaluator: Evaluator, device_state: TrainState, step: int) -> None:
    """One evaluator's figures at `step`, logged under its name; validation's (the EMA's with
    train.select='best_ema') also decide early stopping and which checkpoint is best, and make the console's row."""
    metrics = evaluator(run, device_state, step)
    run.write_record({**run.row_fields(step), 'split': evaluator.name, **metrics})
    if evaluator.name != selection_split(run.config):
        run.note(f'{evaluator.name} (step {step}): {_headline(run.task, metrics)}')
        return
    early = run.config.train.early_stopping
    run.loop.validated(step, metrics['loss'], early.min_delta, early.patience)
    run.hooks.validated(run, step, metrics, run.loop.best_step == step)


class ConsoleRows(Hook):
    """The console's progress (a bar on a terminal, a line every 5% elsewhere) and its table, a row at each
    validation beside the latest training figures."""

    def after_step(self, run: RunContext, step: int, evaluating: bool) -> None:
        assert run.console is not None  # the run opens its console before any step
        run.console.advance()

    def validated(self, run: RunContext, step: int, metrics: dict, improved: bool) -> None:
        train_metrics, learning_rate = run.records.latest
        assert run.console is not None and learning_rate is not None  # TrainRecords wrote this step's row first
        run.console.row(
            epoch=math.ceil(step / run.plan.steps_per_epoch),
            step=step,
            elapsed=run.loop.elapsed_s,
            train=train_metrics,
            validation=metrics,
            learning_rate=learning_rate,
        )


def _measure_costs(run: RunContext, device_state: TrainState, batch: dict) -> None:
    """What a step costs (jaxdl.train.costs), before the first step: on the console once, in environment.json,
    and what the throughput records take MFU from."""
    try:
        costs = costs_lib.measure(run, device_state, batch)
    except Exception as e:  # an instrument never stops a run; the step itself reports what is wrong with it
        run.note(f'warning: could not measure what a step costs ({type(e).__name__}: {str(e)[:200]})')
        return
    run.note(costs_lib.describe(costs))
    step = costs['train_step'] or {}
    run.throughput.flops_per_device_step = step.get('flops_per_device')
    peak = costs['peak_tflops_per_device']
    run.throughput.peak_flops_per_device = peak * 1e12 if peak else None
    run.environment['costs'] = costs
    if run.is_main:
        write_json(run.workdir / 'environment.json', run.environment)


def _summary(
    config: ConfigDict,
    plan: Plan,
    loop: LoopState,
    selected_step: int,
    final_step: int,
    log_path: Path,
    tests: dict[str, dict],
) -> dict:
    records = read_jsonl(log_path)
    at_selected = lambda split: next((r for r in records if r['split'] == split and r['step'] == selected_step), None)
    strip = lambda r: {k: v for k, v in r.items() if k not in ('split', 'elapsed_s')} if r else None
    ema = (
        {'validation_ema': strip(at_selected('validation_ema')), 'test_ema': dict(tests['test_ema'])}
        if 'test_ema' in tests
        else {}
    )
    return {
        'stop_reason': loop.stop_reason,
        'final_step': final_step,
        'epochs_completed': final_step / plan.steps_per_epoch,
        'best_step': loop.best_step,
        'best_validation_loss': loop.best_validation_loss,
        'selected': config.train.select,
        'selected_step': selected_step,
        'validation': strip(at_selected('validation')),
        'test': dict(tests['test']),
        **ema,
        'train_time_s': loop.elapsed_s,
        'skipped_updates': loop.skipped_updates,
        'skipped_corrupt_images': _all_processes_sum(loop.skipped_images),
    }


def _all_processes_sum(count: int) -> int:
    if jax.process_count() == 1:
        return count
    from jax.experimental import multihost_utils

    return int(np.sum(multihost_utils.process_allgather(np.int64(count))))
