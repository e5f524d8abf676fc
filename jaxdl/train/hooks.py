"""Hooks: what runs beside the training loop at its named moments, without the loop naming it.

The loop calls every hook of a run at these moments, in the order the hooks were given, on every process (a hook
that writes somewhere shared acts where `run.is_main`):

    run_start(run)                      the run is open: config and environment recorded, a checkpoint (if any)
                                        restored (`run.resumed_from`), nothing trained yet in this process
    train_start(run, device_state, batch)  the first batch of this process's training is in hand, not yet
                                        dispatched (what a step costs is measured here: jaxdl.train.costs)
    before_dispatch(run, step)          step `step` (1-based) is about to be dispatched
    after_dispatch(run, step, metrics)  it was dispatched; `metrics` its TrainMetrics on device
    after_step(run, step, evaluating)   the step counted; `evaluating`: evaluators run at this step
    evaluation_batch(run, name, step, index)  batch `index` of evaluator `name` was dispatched (step None: after
                                        training, the test)
    record(run, row)                    a row was written to metrics.jsonl (train, validation, an extra split,
                                        the test): a dict with `step`, `epoch`, `split` and the figures
    validated(run, step, metrics, improved)  validation ran; `improved`: it is the best so far (selection's)
    before_save(run, step)              a checkpoint of `step` is about to be written (the loop item taken after)
    after_save(run, step)               its write was dispatched (orbax may still be writing)
    end_of_step(run, step)              everything of the step is done
    after_summary(run, summary)         summary.json and progress.png were written: the run is complete
    closed(run, error)                  the run ends, completed or not (`error`: the exception, else None);
                                        always called, so a hook lets go of what it holds here

`run` is the RunContext (jaxdl.train.loop): the config, environment, plan, pipeline, task, runner, checkpoints,
log, console and loop state of the run. A hook subclasses `Hook` and overrides what it needs; `train.hooks`
names hooks by import path (a Hook subclass, or a function of the run's config returning a Hook), built before
any step. The loop's own hooks are the training records (`TrainRecords`, jaxdl.train.loop), the trackers
(jaxdl.trackers), the profiler window (jaxdl.train.profiler), the step costs (jaxdl.train.costs) and the
test-only kill points (jaxdl.train.kill_points).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_collections import ConfigDict

    from jaxdl.train.loop import RunContext
    from jaxdl.train.state import TrainState
    from jaxdl.train.step import TrainMetrics

MOMENTS = (
    'run_start',
    'train_start',
    'before_dispatch',
    'after_dispatch',
    'after_step',
    'evaluation_batch',
    'record',
    'validated',
    'before_save',
    'after_save',
    'end_of_step',
    'after_summary',
    'closed',
)


class Hook:
    """Every moment a no-op: override the ones a hook acts at."""

    def run_start(self, run: RunContext) -> None:
        pass

    def train_start(self, run: RunContext, device_state: TrainState, batch: dict) -> None:
        pass

    def before_dispatch(self, run: RunContext, step: int) -> None:
        pass

    def after_dispatch(self, run: RunContext, step: int, metrics: TrainMetrics) -> None:
        pass

    def after_step(self, run: RunContext, step: int, evaluating: bool) -> None:
        pass

    def evaluation_batch(self, run: RunContext, name: str, step: int | None, index: int) -> None:
        pass

    def record(self, run: RunContext, row: dict) -> None:
        pass

    def validated(self, run: RunContext, step: int, metrics: dict, improved: bool) -> None:
        pass

    def before_save(self, run: RunContext, step: int) -> None:
        pass

    def after_save(self, run: RunContext, step: int) -> None:
        pass

    def end_of_step(self, run: RunContext, step: int) -> None:
        pass

    def after_summary(self, run: RunContext, summary: dict) -> None:
        pass

    def closed(self, run: RunContext, error: BaseException | None) -> None:
        pass


def _calling_each(moment: str) -> Callable[..., None]:
    def call(self: Hooks, *args: Any) -> None:
        for hook in self.hooks:
            getattr(hook, moment)(*args)

    call.__name__ = moment
    call.__doc__ = f'`{moment}` of every hook, in order.'
    return call


class Hooks(Hook):
    """Several hooks as one: each moment calls every hook in order. `closed` reaches every hook even when one
    raises (the first error is raised after)."""

    def __init__(self, hooks: Iterable[Hook]) -> None:
        self.hooks = tuple(hooks)

    def closed(self, run: RunContext, error: BaseException | None) -> None:
        failure = None
        for hook in self.hooks:
            try:
                hook.closed(run, error)
            except Exception as e:  # the others still let go of what they hold
                failure = failure or e
        if failure is not None:
            raise failure


for _moment in MOMENTS:
    if _moment != 'closed':
        setattr(Hooks, _moment, _calling_each(_moment))


def from_config(config: ConfigDict) -> tuple[Hook, ...]:
    """The hooks `train.hooks` names, built: each import path names a Hook subclass (built without arguments), a
    function of the config returning a Hook, or a Hook. A path that does not import or is no hook: a ConfigError
    naming it, before any step."""
    from jaxdl.errors import ConfigError
    from jaxdl.registry import import_object

    hooks = []
    for i, path in enumerate(config.train.hooks):
        key = f'train.hooks[{i}]'
        found = import_object(path, key)
        try:
            hook = (
                found()
                if isinstance(found, type) and issubclass(found, Hook)
                else found
                if isinstance(found, Hook)
                else found(config)
                if callable(found)
                else found
            )
        except Exception as e:
            raise ConfigError(f'config key {key!r}: building the hook {path!r} failed ({type(e).__name__}: {e})') from e
        if not isinstance(hook, Hook):
            raise ConfigError(
                f'config key {key!r}: {path!r} is not a hook (it gives a {type(hook).__name__}); name a '
                f'subclass of jaxdl.train.hooks.Hook, or a function of the config returning one'
            )
        hooks.append(hook)
    return tuple(hooks)
