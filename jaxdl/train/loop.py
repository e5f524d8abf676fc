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
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import config as config_lib, determinism, registry
from jaxdl.checkpoint import Checkpoints
from jaxdl.config import Plan
from jaxdl.data.pipeline import Pipeline
from jaxdl.errors import DataError, Preempted, TrainingDiverged
from jaxdl.evaluation import evaluate
from jaxdl.logging import Console, RunLog, environment_record, read_jsonl, write_json
from jaxdl.plots import plot_progress
from jaxdl.train import kill_points
from jaxdl.train.guard import StopSignals, WorkdirLock, check_writable
from jaxdl.train.state import TrainState, state_from_config
from jaxdl.train.step import TrainMetrics, add_train_metrics, runner_for


@dataclasses.dataclass
class LoopState:
    """What the loop carries from step to step and through a checkpoint (its `loop` item, as JSON): enough for a
    resumed run to continue exactly where the checkpointed one stood, early stopping and train records included."""
    best_step: int | None = None
    best_validation_loss: float | None = None
    validations_since_best: int = 0
    elapsed_s: float = 0.0
    stop_reason: str | None = None  # None while training; then 'completed' or 'early_stopping'
    skipped_updates: int = 0        # updates with a non-finite loss or gradient (train.on_nonfinite='skip')
    skipped_images: int = 0         # this process's training examples left out as corrupt (skip_corrupt_images)
    # The training metrics summed since the last train record, as JSON (float32 and int32 sums go through JSON
    # exactly), so a resumed run writes the records an uninterrupted one does.
    pending_train: dict | None = None

    @property
    def finished(self) -> bool:
        return self.stop_reason is not None

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), 'finished': self.finished}

    @classmethod
    def from_json(cls, record: dict) -> 'LoopState':
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
    return {'sums': {k: np.asarray(v).tolist() for k, v in host.sums.items()},  # (confusion matrices too)
            'nonfinite_steps': float(host.nonfinite_steps), 'first_nonfinite_step': float(host.first_nonfinite_step)}


def _metrics_from_json(record: dict) -> TrainMetrics:
    def device_sum(value):  # back with its step's dtype: int32 counts stay integers, float32 sums float32
        value = np.asarray(value)
        return jnp.asarray(value, jnp.int32 if value.dtype.kind in 'iu' else jnp.float32)
    return TrainMetrics(sums={k: device_sum(v) for k, v in record['sums'].items()},
                        nonfinite_steps=jnp.float32(record['nonfinite_steps']),
                        first_nonfinite_step=jnp.float32(record['first_nonfinite_step']))


@dataclasses.dataclass
class FitResult:
    state: TrainState        # the selected model (best by validation, or last)
    summary: dict
    workdir: Path


def _environment(config, pipeline: Pipeline, plan: Plan, parallel: str, transfer: dict | None) -> dict:
    """environment.json: versions, devices and git revision, plus what rebuilding the run needs (dataset
    shape and class names, the plan in steps) so evaluate/predict never re-read the dataset's metadata."""
    spec, d = pipeline.spec, config.dataset
    environment = environment_record(config)
    environment['dataset'] = {
        'name': spec.name, 'num_classes': spec.num_classes, 'image_shape': list(spec.image_shape),
        'class_names': list(spec.class_names),
        'sizes': {s: pipeline.size(s) for s in (d.train_split, d.validation_split, d.test_split)},
        'source': 'stream' if pipeline.streaming else 'memory'}
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


def _record_run(workdir: Path, config, environment: dict, has_checkpoints: bool) -> None:
    """config.json and environment.json; a resumed run must have the config it started with, but for where its
    arrays live (config.PLACEMENT_KEYS: another device count, mesh or parallel mode)."""
    config_path = workdir / 'config.json'
    new = json.loads(config_lib.to_json(config))
    if has_checkpoints and config_path.exists():
        old = json.loads(config_path.read_text())
        flat_old, flat_new = config_lib.flatten(old), config_lib.flatten(new)
        changed = sorted(k for k in set(flat_old) | set(flat_new)
                         if flat_old.get(k) != flat_new.get(k) and k not in config_lib.PLACEMENT_KEYS)
        if changed:
            raise config_lib.ConfigError(
                f'{workdir} holds a run trained with a different config ({", ".join(changed)} differ); '
                f'resume with the recorded config (`jaxdl rerun`) or train into a new --workdir')
    environment_path = workdir / 'environment.json'
    if has_checkpoints and environment_path.exists():
        _check_same_data(json.loads(environment_path.read_text()).get('dataset', {}), environment['dataset'],
                         workdir)
    write_json(config_path, new)
    write_json(workdir / 'environment.json', environment)


def _check_same_data(started: dict, now: dict, workdir: Path) -> None:
    """A resumed streaming run reads examples by index: if the record files changed since it started, the same
    indices are other examples, so it stops here (its checkpoints untouched)."""
    before, after = started.get('fingerprints'), now.get('fingerprints')
    if before and after and before != after:
        changed = sorted(s for s in set(before) | set(after) if before.get(s) != after.get(s))
        raise DataError(f'the files of dataset {now["name"]!r} changed since the run in {workdir} started (splits '
                        f'{", ".join(changed)}: fingerprint {", ".join(str(before.get(s)) for s in changed)} then, '
                        f'{", ".join(str(after.get(s)) for s in changed)} now), so its example indices no longer '
                        f'name the same examples. Restore the files it started with to resume, or train into a new '
                        f'--workdir. Its checkpoints are untouched.')


def fit(config, workdir: str | Path, *, show_progress: bool = True) -> FitResult:
    """Trains `config` into `workdir` (resuming from its latest checkpoint) and returns the selected model.

    With `transfer.init_from` the run starts from another run's weights (see jaxdl.transfer); with
    `transfer.compare_with_scratch` the same budget is also trained from scratch into WORKDIR/from_scratch and
    both test results are reported side by side in summary.json under `comparison`."""
    config = config_lib.validate(config)
    determinism.request(config.train.deterministic)  # before fit's first JAX computation starts the backend
    if config.transfer.init_from:  # recorded absolute, so a rerun from anywhere finds the same source
        config = copy.deepcopy(config)
        config.transfer.init_from = str(Path(config.transfer.init_from).absolute())
    result = _fit(config, Path(workdir).absolute(), show_progress)
    if config.transfer.init_from and config.transfer.compare_with_scratch:
        result = _compare_with_scratch(config, result, show_progress)
    return result


def _compare_with_scratch(config, result: FitResult, show_progress: bool) -> FitResult:
    from jaxdl.transfer import scratch_baseline_config
    scalars = lambda metrics: {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    scratch_dir = result.workdir / 'from_scratch'
    Console(0, 0, enabled=jax.process_index() == 0, progress=False).message(
        f'training the from-scratch baseline with the same budget into {scratch_dir}')
    baseline = _fit(scratch_baseline_config(config), scratch_dir, show_progress)
    summary = {**result.summary, 'comparison': {
        'fine_tuned': scalars(result.summary['test']), 'from_scratch': scalars(baseline.summary['test']),
        'from_scratch_workdir': str(scratch_dir), 'source': config.transfer.init_from}}
    if jax.process_index() == 0:
        write_json(result.workdir / 'summary.json', summary)
    return dataclasses.replace(result, summary=summary)


def _fit(config, workdir: Path, show_progress: bool) -> FitResult:
    """One run in one workdir, which it holds (a lock) while it trains there."""
    lock = None
    if jax.process_index() == 0:
        check_writable(workdir)
        lock = WorkdirLock(workdir).acquire()
        if lock.taken_over:
            Console(0, 0, progress=False).message(
                f'took over {lock.path.name} from a run that is no longer alive (pid {lock.taken_over.get("pid")})')
    try:
        return _fit_holding_lock(config, workdir, show_progress)
    finally:
        if lock:
            lock.release()


def _fit_holding_lock(config, workdir: Path, show_progress: bool) -> FitResult:
    is_main = jax.process_index() == 0

    pipeline = Pipeline.for_config(config, process_index=jax.process_index(), process_count=jax.process_count())
    # Every split the run reads is opened (and sized) now, before anything runs in another thread: a missing split
    # fails here, and tfds.testing.mock_data, which redirects the whole process's file system while a split opens,
    # cannot redirect the listing orbax's checkpoint manager starts in its own thread when it is created.
    for split in (config.dataset.train_split, config.dataset.validation_split, config.dataset.test_split):
        pipeline.size(split)
    spec, task = pipeline.spec, pipeline.task
    plan = Plan.resolve(config, pipeline.steps_per_epoch(config.train.batch_size))
    runner = runner_for(config.train, task)
    state, schedule = state_from_config(config, task, image_shape=spec.image_shape, plan=plan,
                                        shardings=runner.state_shardings)
    if is_main:  # two latest + best + one being written, before any step rather than at the first failed save
        check_writable(workdir, needed_bytes=4 * sum(x.nbytes for x in jax.tree.leaves(state.to_checkpoint())))

    checkpoints = Checkpoints(workdir / 'checkpoints')
    latest = checkpoints.latest_step()
    transfer, transfer_message = None, None
    if config.transfer.init_from and latest is None:  # a resumed run has the transferred weights in its checkpoint
        from jaxdl.transfer import initialize_from
        state, report = initialize_from(state, config.transfer, config.model)
        transfer, transfer_message = report.as_record(), report.describe()
    elif config.transfer.init_from and (workdir / 'environment.json').exists():
        transfer = json.loads((workdir / 'environment.json').read_text()).get('transfer')
    if is_main:
        _record_run(workdir, config, _environment(config, pipeline, plan, runner.kind, transfer), latest is not None)
    log = RunLog(workdir, enabled=is_main)

    loop = LoopState()
    if latest is not None:
        warn = lambda text: Console(0, 0, enabled=is_main, progress=False).message(f'warning: {text}')
        latest, tree, record = checkpoints.restore_newest_intact(state.to_checkpoint(), warn)
        state, loop = state.from_checkpoint(tree), LoopState.from_json(record)
    if loop.finished and (workdir / 'summary.json').exists():
        summary = json.loads((workdir / 'summary.json').read_text())
        Console(0, 0, enabled=is_main, progress=False).message(
            f'{workdir} holds a finished run ({summary["stop_reason"]} at step {summary["final_step"]}); '
            f'not training or testing again. Train into a new --workdir to start over.')
        selected = _select(checkpoints, state, summary['selected_step'], latest)
        checkpoints.close()
        log.close()
        return FitResult(selected, summary, workdir)

    console = Console(plan.total_steps, int(state.step), enabled=is_main, progress=show_progress,
                      metric=task.headline[1])
    if transfer_message:
        console.message(transfer_message)
    # Whatever a stopped run logged after the checkpoint this run starts from (all of it, when it stopped before
    # its first checkpoint) is trained and logged again.
    log.truncate_after(latest if latest is not None else 0)
    if latest is not None:
        console.message(f'resuming {workdir} from step {latest}')
    try:
        with StopSignals() as stop:
            device_state = _train(config, plan, pipeline, runner, task, schedule, runner.place_state(state),
                                  checkpoints, loop, log, console, stop)
        final_state = runner.host_state(device_state)
        checkpoints.wait()
        selected_step = loop.best_step if config.train.select == 'best' and loop.best_step is not None \
            else int(final_state.step)
        selected = _select(checkpoints, final_state, selected_step, int(final_state.step))
        test_batches = pipeline.eval_batches(config.dataset.test_split, config.train.eval_batch_size)
        test = evaluate(runner, runner.place_state(selected), kill_points.after_first(test_batches, 'test'), task)
        log.write({'step': selected_step, 'epoch': selected_step / plan.steps_per_epoch, 'split': 'test', **test})
        summary = _summary(config, plan, loop, selected_step, int(final_state.step), log.path, test)
        if is_main:  # summary.json last: its presence says the run is complete
            plot_progress(read_jsonl(log.path), workdir / 'progress.png', title=f'{spec.name}: {config.model.name}',
                          metrics=task.headline[:2], selected_step=selected_step)
            write_json(workdir / 'summary.json', summary)
            kill_points.at('summary')
        console.message(f'test ({config.dataset.test_split}, step {selected_step}): ' + ', '.join(
            f'{k} {v:.4f}' for k, v in test.items() if k in task.headline and isinstance(v, (int, float))))
        return FitResult(selected, summary, workdir)
    finally:
        console.close()
        checkpoints.close()
        log.close()


def _select(checkpoints: Checkpoints, state: TrainState, step: int, current_step: int) -> TrainState:
    if step == current_step:
        return state
    tree, _ = checkpoints.restore(step, state.to_checkpoint())
    return state.from_checkpoint(tree)


def _stop_requested(stop: StopSignals, step: int, plan: Plan) -> bool:
    """Whether to stop after this step for SIGTERM/SIGINT. Several processes must stop (and save) at the same
    step, so there they agree at every log step through one small all-gather; one process looks every step."""
    if jax.process_count() == 1:
        return stop.received is not None
    if step % plan.log_every:
        return False
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.int32(stop.received is not None))))


def _check_finite(metrics: TrainMetrics, loop: LoopState, config, checkpoints: Checkpoints,
                  console: Console) -> None:
    """The one place a non-finite step is noticed, on training metrics fetched to the host anyway (no per-step
    sync). Such a step's update was not applied (see train_step). With on_nonfinite='stop' the run stops here,
    before any checkpoint is written from this point on; with 'skip' the count is kept and reported."""
    skipped = int(metrics.nonfinite_steps)
    if not skipped:
        return
    first = int(metrics.first_nonfinite_step)
    if config.train.on_nonfinite == 'stop':
        latest = checkpoints.latest_step()
        raise TrainingDiverged(
            f'non-finite loss or gradient at step {first}: training stopped (that update was not applied). '
            f'The last checkpoint ({f"step {latest}" if latest is not None else "none yet"}) is intact. Lower '
            f'optimizer.learning_rate, set optimizer.clip_global_norm, or set train.on_nonfinite=skip.')
    loop.skipped_updates += skipped
    console.message(f'skipped {skipped} update(s) with a non-finite loss or gradient (first at step {first}; '
                    f'{loop.skipped_updates} in this run)')


def _train(config, plan: Plan, pipeline: Pipeline, runner, task, schedule, device_state, checkpoints: Checkpoints,
           loop: LoopState, log: RunLog, console: Console, stop: StopSignals):
    """The epoch loop: trains from the state's step until the plan's end or early stopping, updating `loop`.
    Returns the device state at the end of training."""
    step = int(runner.host_state(device_state).step)
    started = time.time() - loop.elapsed_s
    train_sums = _metrics_from_json(loop.pending_train) if loop.pending_train else None
    train_metrics, learning_rate = {}, None
    patience = config.train.early_stopping.patience
    in_flight = collections.deque()  # recent steps' metrics: bounds the dispatch queue (see StepRunner)
    # A log step's record waits until the next step is dispatched: fetching its sums then finds them ready and
    # the device busy, instead of idle while the host summarises and writes (benchmarks/README.md).
    # Validation and checkpoint steps write at once: they sync anyway.
    deferred = None

    def write_train_record(sums: TrainMetrics, common):
        host = jax.device_get(sums)
        _check_finite(host, loop, config, checkpoints, console)
        metrics = task.summarize(host.sums)
        rate = float(schedule(common['step'] - 1))  # the rate this step used
        log.write({**common, 'split': 'train', 'learning_rate': rate, **metrics})
        return metrics, rate

    batches = pipeline.train_batches(seed=config.seed, global_batch=config.train.batch_size, start_step=step)
    while step < plan.total_steps and not loop.finished:
        batch = next(batches)
        loop.skipped_images += batch['valid'].size - int(batch['valid'].sum())  # dataset.skip_corrupt_images
        device_state, metrics = runner.train(device_state, batch)
        if deferred is not None:
            train_metrics, learning_rate = write_train_record(*deferred)
            deferred = None
        train_sums = metrics if train_sums is None else add_train_metrics(train_sums, metrics)
        if runner.max_steps_in_flight:
            in_flight.append(metrics)
            if len(in_flight) > runner.max_steps_in_flight:
                jax.block_until_ready(in_flight.popleft())
        step += 1
        console.advance()
        validate = step % plan.validate_every == 0 or step == plan.total_steps
        loop.elapsed_s = time.time() - started
        common = {'step': step, 'epoch': step / plan.steps_per_epoch, 'elapsed_s': loop.elapsed_s}
        if validate:
            train_metrics, learning_rate = write_train_record(train_sums, common)
            train_sums = None
        elif step % plan.log_every == 0:  # (never the last step: that one validates, so nothing stays deferred)
            deferred, train_sums = (train_sums, common), None
        if validate:
            batches_of = pipeline.eval_batches(config.dataset.validation_split, config.train.eval_batch_size)
            validation = evaluate(runner, device_state, kill_points.after_first(batches_of, 'validation', step), task)
            log.write({**common, 'split': 'validation', **validation})
            loop.validated(step, validation['loss'], config.train.early_stopping.min_delta, patience)
            console.row(epoch=math.ceil(step / plan.steps_per_epoch), step=step, elapsed=loop.elapsed_s,
                        train=train_metrics, validation=validation, learning_rate=learning_rate)
        if step == plan.total_steps and not loop.finished:
            loop.stop_reason = 'completed'
        stopping = not loop.finished and _stop_requested(stop, step, plan)
        save = validate or step % plan.checkpoint_every == 0 or loop.finished or stopping
        if save and deferred is not None:  # on disk before the checkpoint that follows it
            train_metrics, learning_rate = write_train_record(*deferred)
            deferred = None
        if save:
            pending = jax.device_get(train_sums) if train_sums is not None else None  # fetched once
            if pending is not None and config.train.on_nonfinite == 'stop':  # never save past a non-finite step
                _check_finite(pending, loop, config, checkpoints, console)
            loop.pending_train = _metrics_to_json(pending) if pending is not None else None
            checkpoints.save(step, runner.host_state(device_state).to_checkpoint(), loop.to_json(), loop.best_step)
            kill_points.at('saving', step)
            kill_points.at('saved', step, settle=checkpoints.wait)
        if stopping:
            checkpoints.wait()
            raise Preempted(f'{stop.received or "a stop signal (on another process)"} received: stopped after step '
                            f'{step} and saved a checkpoint there; run the same command again to resume')
        kill_points.at('step', step)
    if loop.stop_reason == 'early_stopping':
        console.message(f'early stopping at step {step}: validation loss has not improved for {patience} '
                        f'validations (best {loop.best_validation_loss:.4f} at step {loop.best_step})')
    return device_state


def _summary(config, plan: Plan, loop: LoopState, selected_step: int, final_step: int, log_path: Path,
             test: dict) -> dict:
    validations = {r['step']: r for r in read_jsonl(log_path) if r['split'] == 'validation'}
    strip = lambda r: {k: v for k, v in r.items() if k not in ('split', 'elapsed_s')} if r else None
    return {
        'stop_reason': loop.stop_reason,
        'final_step': final_step,
        'epochs_completed': final_step / plan.steps_per_epoch,
        'best_step': loop.best_step,
        'best_validation_loss': loop.best_validation_loss,
        'selected': config.train.select,
        'selected_step': selected_step,
        'validation': strip(validations.get(selected_step)),
        'test': dict(test),
        'train_time_s': loop.elapsed_s,
        'skipped_updates': loop.skipped_updates,
        'skipped_corrupt_images': _all_processes_sum(loop.skipped_images),
    }


def _all_processes_sum(count: int) -> int:
    if jax.process_count() == 1:
        return count
    from jax.experimental import multihost_utils
    return int(np.sum(multihost_utils.process_allgather(np.int64(count))))
