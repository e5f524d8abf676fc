"""Wall time from the command to the reported test figure, for each task's experiment, as a user runs it.

    python benchmarks/time_to_accuracy.py                          # every experiment below
    python benchmarks/time_to_accuracy.py jaxdl/experiments/digits_cnn.py

Each experiment runs as `jaxdl train EXPERIMENT --workdir TMP --no-progress` in a fresh process (dataset already
prepared: its one-time preparation is not counted); the wall time covers start-up, compilation, training,
validation, checkpoints and the test split. The figures are read from the run's summary.json; they are the ones
the README quotes for each experiment.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# experiment -> the test figures the README quotes for it
EXPERIMENTS = {
    'jaxdl/experiments/digits_cnn.py': ('accuracy',),
    'jaxdl/experiments/digits_resnet.py': ('accuracy',),
    'jaxdl/experiments/digits_vit.py': ('accuracy',),
    'jaxdl/experiments/rotation_regression.py': ('rmse',),
    'jaxdl/experiments/shapes_segmentation.py': ('mean_iou',),
    'jaxdl/experiments/shapes_detection.py': ('map_50', 'map'),  # mAP@.5 and COCO mAP@[.5:.95] (pycocotools)
}


def run(experiment: str, metrics: tuple[str, ...], workdir: Path) -> dict:
    start = time.perf_counter()
    subprocess.run([sys.executable, '-m', 'jaxdl', 'train', experiment, '--workdir', str(workdir), '--no-progress'],
                   cwd=ROOT, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    summary = json.loads((workdir / 'summary.json').read_text())
    return {'experiment': experiment, 'wall_s': round(seconds, 1), 'train_time_s': round(summary['train_time_s'], 1),
            'steps': summary['final_step'], **{m: round(summary['test'][m], 4) for m in metrics}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('experiments', nargs='*', default=list(EXPERIMENTS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for i, experiment in enumerate(args.experiments):
            metrics = EXPERIMENTS.get(experiment, ('loss',))
            print(json.dumps(run(experiment, metrics, Path(tmp) / str(i))), flush=True)


if __name__ == '__main__':
    main()
