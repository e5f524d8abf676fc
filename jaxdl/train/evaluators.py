"""Evaluators: each scores the model on one split at its own cadence, one small object per concern (big_vision's
evaluators, kauldron's evals).

    validation       `dataset.validation_split` every `train.validate_every` and at the last step; the only
                     figures model selection and early stopping read
    validation_ema   the same split scored with the EMA of the weights (optimizer.ema_decay), beside it;
                     selection reads it instead with train.select='best_ema'
    extra splits     each of `eval.splits` every `eval.every` (default: with validation) and at the last step,
                     logged under the split's name (e.g. 'train[:1000]': the gap between training and validation
                     data, measured the same way)
    test, test_ema   `dataset.test_split`, once, after training, on the selected checkpoint's weights (and its
                     EMA's)

An evaluator is a name (its rows' `split` in metrics.jsonl), a cadence in steps (0: only after training) and a
call that runs the one evaluation loop (`jaxdl.train.evaluation.evaluate`) over its batches. A new kind of
evaluation (other weights, other figures) is one more class with the same three things.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Protocol

from jaxdl.config import Plan
from jaxdl.train.evaluation import evaluate


class Evaluator(Protocol):
    @property
    def name(self) -> str:
        """Its metrics.jsonl rows' `split`."""

    @property
    def every(self) -> int:
        """In steps; 0: once, after training (the test)."""

    def due(self, step: int, plan: Plan) -> bool:
        """Whether it runs after training step `step`."""

    def __call__(self, run, device_state, step: int | None) -> dict:
        """The figures of `device_state` (a run's state placed by its runner) at `step` (None after training)."""


@dataclasses.dataclass(frozen=True)
class SplitEvaluator:
    """The task's figures on every example of `split` once (the last batch padded, never dropped), with the
    state's own weights or (`weights='ema'`) their moving average."""

    name: str
    split: str
    every: int
    weights: str = 'raw'

    def due(self, step: int, plan: Plan) -> bool:
        return bool(self.every) and (step % self.every == 0 or step == plan.total_steps)

    def __call__(self, run, device_state, step: int | None) -> dict:
        batches = run.pipeline.eval_batches(self.split, run.config.train.eval_batch_size)
        state = device_state.ema_weights() if self.weights == 'ema' else device_state
        return evaluate(run.runner, state, self._announced(run, batches, step), run.task)

    def _announced(self, run, batches, step) -> Iterator[dict]:
        for index, batch in enumerate(batches):
            yield batch
            run.hooks.evaluation_batch(run, self.name, step, index)


def with_ema(config) -> bool:
    return config.optimizer.ema_decay > 0


def selection_split(config) -> str:
    """The evaluator whose loss model selection and early stopping read."""
    return 'validation_ema' if config.train.select == 'best_ema' else 'validation'


def during_training(config, plan: Plan) -> tuple[SplitEvaluator, ...]:
    """The evaluators that run while the model trains: validation first (and its EMA's), then the extra
    splits."""
    d = config.dataset
    ema = (
        (SplitEvaluator('validation_ema', d.validation_split, plan.validate_every, 'ema'),) if with_ema(config) else ()
    )
    return (
        SplitEvaluator('validation', d.validation_split, plan.validate_every),
        *ema,
        *(SplitEvaluator(split, split, plan.eval_every) for split in config.eval.splits),
    )


def after_training(config) -> tuple[SplitEvaluator, ...]:
    """The test: once, on the selected checkpoint (its weights, and its EMA's)."""
    ema = (SplitEvaluator('test_ema', config.dataset.test_split, 0, 'ema'),) if with_ema(config) else ()
    return (SplitEvaluator('test', config.dataset.test_split, 0), *ema)
