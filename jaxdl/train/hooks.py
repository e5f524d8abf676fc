"""Hooks: what runs beside the training loop at its named moments, without the loop naming it.

The loop calls every hook of a run at these points, in the order the hooks were given:

    after_dispatch(run, step, metrics)  step `step` (1-based) was dispatched; `metrics` its TrainMetrics on device
    after_step(run, step, evaluating)   the step counted; `evaluating`: the evaluators run at this step
    evaluation_batch(run, name, step, index)  batch `index` of evaluator `name` was dispatched (step None: after
                                        training, the test)
    before_save(run, step)              a checkpoint of `step` is about to be written (the loop item taken after)
    after_save(run, step)               its write was dispatched (orbax may still be writing)
    end_of_step(run, step)              everything of the step is done
    after_summary(run, summary)         summary.json was written: the run is complete

`run` is the RunContext (jaxdl.train.loop): the config, plan, pipeline, task, runner, checkpoints, log, console and
loop state of the run. A hook subclasses `Hook` and overrides what it needs. The loop's own hooks are the
training records (`TrainRecords`, jaxdl.train.loop) and the test-only kill points (`KillPoints`,
jaxdl.train.kill_points).
"""
from __future__ import annotations


class Hook:
    """Every moment a no-op: override the ones a hook acts at."""

    def after_dispatch(self, run, step: int, metrics) -> None:
        pass

    def after_step(self, run, step: int, evaluating: bool) -> None:
        pass

    def evaluation_batch(self, run, name: str, step: int | None, index: int) -> None:
        pass

    def before_save(self, run, step: int) -> None:
        pass

    def after_save(self, run, step: int) -> None:
        pass

    def end_of_step(self, run, step: int) -> None:
        pass

    def after_summary(self, run, summary: dict) -> None:
        pass


class Hooks(Hook):
    """Several hooks as one: each moment calls every hook in order."""

    def __init__(self, hooks):
        self.hooks = tuple(hooks)

    def after_dispatch(self, run, step, metrics):
        for hook in self.hooks:
            hook.after_dispatch(run, step, metrics)

    def after_step(self, run, step, evaluating):
        for hook in self.hooks:
            hook.after_step(run, step, evaluating)

    def evaluation_batch(self, run, name, step, index):
        for hook in self.hooks:
            hook.evaluation_batch(run, name, step, index)

    def before_save(self, run, step):
        for hook in self.hooks:
            hook.before_save(run, step)

    def after_save(self, run, step):
        for hook in self.hooks:
            hook.after_save(run, step)

    def end_of_step(self, run, step):
        for hook in self.hooks:
            hook.end_of_step(run, step)

    def after_summary(self, run, summary):
        for hook in self.hooks:
            hook.after_summary(run, summary)
