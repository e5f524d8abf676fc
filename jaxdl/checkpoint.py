"""orbax CheckpointManager for a run: the latest checkpoint (resume) and the best by validation loss.

A checkpoint holds two items: `state` (step, params, model_state, opt_state, rng as plain arrays: orbax alone
restores it) and `loop` (JSON: where in the data the run stands, early-stopping counters, best step).
Preservation keeps the two latest and the best; two latest, so that a damaged newest checkpoint always leaves an
intact one to fall back on.

Which step is best is read from the `loop` item the checkpoint itself carries, never from orbax's memory of the
metrics it was given: a manager reopened by a resumed run does not know which earlier step was best (its BestN
policy then deleted the best checkpoint once it fell out of the latest two), but the loop record it resumes from
does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from jaxdl.errors import CheckpointError


@dataclasses.dataclass
class KeepStep(policies.PreservationPolicy):
    """Preserves one named step (the loop's best), whatever metrics orbax has or has not recorded for it."""

    step: int | None = None

    def should_preserve(self, checkpoints: Sequence, *, context) -> Sequence[bool]:
        del context
        return [info.step == self.step for info in checkpoints]


class DamagedCheckpoint(CheckpointError):
    def __init__(self, step: int, directory: Path, detail: str):
        first_line = detail.strip().splitlines()[0][:300] if detail.strip() else 'unreadable'
        super().__init__(f'the checkpoint at step {step} in {directory} is damaged or incomplete ({first_line})')
        self.step = step


class Checkpoints:
    def __init__(self, directory: str | Path, *, read_only: bool = False):
        self.directory = Path(directory).absolute()
        self._best = KeepStep()
        preserve = policies.AnyPreservationPolicy([policies.LatestN(n=2), self._best])
        # cleanup_tmp_directories: a save killed while being written leaves a temporary directory that no step
        # lists; a writer removes such leftovers when it opens the directory.
        options = ocp.CheckpointManagerOptions(
            preservation_policy=preserve,
            enable_async_checkpointing=True,
            read_only=read_only,
            create=not read_only,
            cleanup_tmp_directories=not read_only,
            save_interval_steps=0 if read_only else 1,
        )
        import logging

        absl = logging.getLogger('absl')
        level = absl.level
        if read_only:  # orbax notes that a read-only directory is read-only
            absl.setLevel(logging.ERROR)
        try:
            self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=('state', 'loop'))
        finally:
            absl.setLevel(level)

    def save(self, step: int, state_tree: Any, loop: dict, best_step: int | None) -> None:
        """Starts an asynchronous save; training continues while it is written.

        `best_step` is the step the loop's own rule (min_delta included) declares best, as its `loop` record says:
        that checkpoint is kept, and the others beyond the two latest are deleted once this save has committed."""
        self._best.step = best_step
        try:
            self.manager.save(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardSave(state_tree), loop=ocp.args.JsonSave(loop)),
                force=True,
            )
        except OSError as e:
            # orbax writes into a temporary directory and deletes older checkpoints only after a save commits,
            # so the previous good checkpoint is still there.
            self._save_failed(step, e)

    def _save_failed(self, step: int, error: OSError):
        from jaxdl.errors import WorkdirError

        kept = [s for s in self.all_steps() if s != step]
        raise WorkdirError(
            f'saving the checkpoint at step {step} in {self.directory} failed ({error.strerror or error}); '
            f'the earlier checkpoints {kept} are untouched. Free space (or fix the disk) and run the '
            f'same command to resume from step {max(kept) if kept else 0}.'
        ) from None

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
            restored = self.manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), loop=ocp.args.JsonRestore())
            )
        except ValueError as e:
            text = str(e)
            if 'tree structures do not match' in text:  # the saved tree differs from the one the config builds
                raise CheckpointError(
                    f'the checkpoint at step {step} in {self.directory} does not fit the model and '
                    f'optimizer its config builds (was it written by another jaxdl version or '
                    f'config?): {" ".join(text.splitlines()[:4])}'
                ) from None
            raise DamagedCheckpoint(step, self.directory, text) from None
        except (OSError, RuntimeError, KeyError) as e:  # missing or truncated files, unreadable metadata
            raise DamagedCheckpoint(step, self.directory, f'{type(e).__name__}: {e}') from None
        return restored['state'], dict(restored['loop'])

    def restore_newest_intact(self, target_tree: Any, warn) -> tuple[int, Any, dict] | None:
        """(step, state tree, loop) of the newest checkpoint that reads back whole; None if there is none at all.

        A damaged one (truncated, half-written, unreadable) is reported through `warn`, moved aside to
        `damaged_checkpoints/` next to this directory (kept, not deleted) and the next older one is tried. If
        every checkpoint is damaged this raises: a workdir with checkpoints never silently restarts from scratch."""
        steps = sorted(self.all_steps(), reverse=True)
        for step in steps:
            try:
                tree, loop = self.restore(step, target_tree)
            except DamagedCheckpoint as e:
                moved = self._quarantine(step)
                warn(f'{e}; moved it to {moved} and trying the previous checkpoint')
                continue
            return step, tree, loop
        if steps:
            raise CheckpointError(
                f'every checkpoint in {self.directory} (steps {steps}) is damaged, so this run '
                f'cannot resume; the damaged ones are in {self.directory.parent / "damaged_checkpoints"}. '
                f'Train into a new --workdir to start over.'
            )
        return None

    def _quarantine(self, step: int) -> Path:
        import shutil
        import time

        target = self.directory.parent / 'damaged_checkpoints' / f'{step}.{time.strftime("%Y%m%dT%H%M%S")}'
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self.directory / str(step)), str(target))
        self.manager.reload()  # forget the step it listed
        return target

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
                raise CheckpointError(
                    f'no best checkpoint recorded in {self.directory} (no validation yet); use --checkpoint latest'
                )
            return best
        try:
            step = int(which)
        except ValueError:
            raise CheckpointError(f"checkpoint {which!r}: write 'best', 'latest' or a step number") from None
        if step not in self.all_steps():
            raise CheckpointError(f'no checkpoint at step {step} in {self.directory}; present: {self.all_steps()}')
        return step

    def wait(self) -> None:
        try:
            self.manager.wait_until_finished()
        except OSError as e:  # an asynchronous save that failed in the background
            self._save_failed(self.latest_step() or 0, e)

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
