"""Which examples each training step reads: a seeded permutation of example indices per epoch, cut into global
batches, each process taking its rows.

A pure function of (seed, step) in TF ops, computed inside the tf.data graph: `tf.random.experimental.index_shuffle`
gives the example at any position of an epoch's permutation without materialising it, so memory does not grow with
the dataset, a resumed run computes the indices at its position directly (nothing before it is read), and every
process computes the same global batch and reads only its own rows of it.

An epoch is `steps_per_epoch * global_batch` positions of the permutation (the remainder of the split is left out
of that epoch, and another remainder of the next, since every epoch is permuted anew).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf


def epoch_seed(seed: int, epoch: tf.Tensor) -> tf.Tensor:
    """A seed per (run seed, epoch), computed inside the graph by a stateless op: every epoch is shuffled (and
    augmented) differently, and a resumed run redraws exactly the same."""
    return tf.random.stateless_uniform(
        [], seed=tf.stack([tf.constant(seed, tf.int64), epoch]), minval=0, maxval=2**62, dtype=tf.int64
    )


@dataclasses.dataclass(frozen=True)
class IndexSampler:
    seed: int
    num_examples: int
    global_batch: int
    steps_per_epoch: int

    def step_indices(self, step: tf.Tensor, first_row: int, rows: int) -> dict:
        """Rows [first_row, first_row + rows) of global batch `step`: `index` (int64 [rows], the examples'
        indices in the split), `position` (int64 [rows], their positions in the epoch: an augmentation's seed)
        and `epoch` (int64 [])."""
        step = tf.cast(step, tf.int64)
        epoch = step // self.steps_per_epoch
        position = (step % self.steps_per_epoch) * self.global_batch + tf.range(
            first_row, first_row + rows, dtype=tf.int64
        )
        seed = tf.stack([tf.constant(self.seed, tf.int64), epoch])
        index = tf.random.experimental.index_shuffle(position, seed, tf.constant(self.num_examples - 1, tf.int64))
        return {'index': index, 'position': position, 'epoch': epoch}

    def global_batch_indices(self, step: int) -> list[int]:
        """The indices of global batch `step`, in row order (for messages and tests)."""
        return [int(i) for i in self.step_indices(tf.constant(step), 0, self.global_batch)['index'].numpy()]
