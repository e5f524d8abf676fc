"""progress.png: training and validation loss and accuracy against iteration, in one figure."""

from __future__ import annotations

from pathlib import Path

# The object API draws straight to a file: no display needed, and the caller's pyplot backend (e.g. a
# notebook's inline one) is left alone.
from matplotlib.figure import Figure


def plot_progress(
    records: list[dict], path: Path, *, metrics=('loss', 'accuracy'), title: str = '', selected_step: int | None = None
) -> None:
    """`selected_step` (the model the test split was run on) is marked with a vertical line."""
    fig = Figure(figsize=(8, 3.2 * len(metrics)))
    axes = fig.subplots(len(metrics), 1, sharex=True, squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics):
        for split, style in (('train', dict(alpha=0.6, lw=1)), ('validation', dict(marker='o', lw=2, ms=4))):
            points = [(r['step'], r[metric]) for r in records if r['split'] == split and metric in r]
            if points:
                steps, values = zip(*points)
                ax.plot(
                    steps, values, label=f'{split} ({"mini-batches" if split == "train" else "full split"})', **style
                )
        if selected_step is not None:
            ax.axvline(selected_step, color='gray', ls='--', lw=1, label=f'selected model (step {selected_step})')
        ax.set_ylabel(metric)
        if metric == 'loss':
            ax.set_yscale('log')  # on a linear axis the overfitting signal (validation loss rising) is invisible
        ax.legend(loc='best', fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel('iteration')
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
