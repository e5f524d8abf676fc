"""orbax CheckpointManager for a run: the latest checkpoint (resume) and the best by validation loss.

A checkpoint holds two items: `state` (step, params, model_state, opt_state, rng as plain arrays: orbax alone
restores it) and `loop` (JSON: where in the data the run stands, early-stopping counters, best step).
Preservation keeps the latest and the best; a plain `best_fn` + `max_to_keep` would delete the latest.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from jaxdl.errors import CheckpointError

BEST_METRIC = 'validation_loss'


class Checkpoints:
    def __init__(self, directory: str | Path, *, read_only: bool = False):
        self.directory = Path(directory).absolute()
        preserve = policies.AnyPreservationPolicy([
            policies.LatestN(n=1),
            policies.BestN(get_metric_fn=lambda m: -m[BEST_METRIC], n=1, keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(preservation_policy=preserve, enable_async_checkpointing=True,
                                               read_only=read_only, create=not read_only,
                                               save_interval_steps=0 if read_only else 1)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=('state', 'loop'))

    def save(self, step: int, state_tree: Any, loop: dict, new_best_loss: float | None = None) -> None:
        """Starts an asynchronous save; training continues while it is written.

        `new_best_loss` is given only when the loop has just declared this step the best (its rule includes
        min_delta), so the checkpoint orbax preserves as best is always the loop's best, never a rival choice."""
        metrics = {BEST_METRIC: float(new_best_loss)} if new_best_loss is not None else None
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state_tree),
                                                        loop=ocp.args.JsonSave(loop)), metrics=metrics, force=True)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def restore(self, step: int, target_tree: Any) -> tuple[Any, dict]:
        """Restores into the structure (and shardings) of `target_tree`."""
        if step not in self.manager.all_steps():
            raise CheckpointError(f'no checkpoint at step {step} in {self.directory}; present: {self.all_steps()}')
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_tree)
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                          loop=ocp.args.JsonRestore()))
        except ValueError as e:  # orbax: the saved tree differs from the one the config builds
            raise CheckpointError(f'the checkpoint at step {step} in {self.directory} does not fit the model and '
                                  f'optimizer its config builds (was it written by another jaxdl version or '
                                  f'config?): {str(e).splitlines()[0]} {" ".join(str(e).splitlines()[1:4])}') from None
        return restored['state'], dict(restored['loop'])

    def restore_loop(self, step: int) -> dict:
        return dict(self.manager.restore(step, args=ocp.args.Composite(loop=ocp.args.JsonRestore()))['loop'])

    def resolve(self, which: str | int) -> int:
        """'latest', 'best' or a step number -> a step that is on disk."""
        latest = self.latest_step()
        if latest is None:
            raise CheckpointError(f'no checkpoint in {self.directory}: has this run trained yet?')
        if which == 'latest':
            return latest
        if which == 'best':
            best = self.restore_loop(latest).get('best_step')
            if best is None or best not in self.all_steps():
                raise CheckpointError(f'no best checkpoint recorded in {self.directory} (no validation yet); '
                                      f'use --checkpoint latest')
            return best
        try:
            step = int(which)
        except ValueError:
            raise CheckpointError(f"checkpoint {which!r}: write 'best', 'latest' or a step number") from None
        if step not in self.all_steps():
            raise CheckpointError(f'no checkpoint at step {step} in {self.directory}; present: {self.all_steps()}')
        return step

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
