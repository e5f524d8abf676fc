"""How often a run compiles its steps, and how long a command takes to answer or to reach its first step.

    python benchmarks/compile_and_startup.py                    # the default digits experiment
    python benchmarks/compile_and_startup.py --experiment jaxdl/experiments/shapes_detection.py

Compilations are counted from JAX's own compile log (`jax_log_compiles`) in a fresh process per phase:
  1. a whole run (every validation and the test split end in a padded batch), and
  2. the same run resumed from its middle checkpoint, as after a crash.
The target is one compilation of the train step and one of the eval step in each phase: no retrace for the last,
padded batch, for the test split, or after a resume.

Start-up is wall time of fresh processes: `jaxdl --help`, `jaxdl datasets`, and `jaxdl train` until its first
training record is on disk (`train.log_every=1 steps`), against the bare import of TensorFlow and of JAX.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run in a child process: fit() with the compile log on, counting "Compiling <function>" lines per function.
COUNT_COMPILES = r'''
import collections, json, logging, sys
import jax
jax.config.update('jax_log_compiles', True)
counts = collections.Counter()
class Count(logging.Handler):
    def emit(self, record):
        text = record.getMessage()
        if text.startswith('Compiling '):
            counts[text.split()[1]] += 1
logging.getLogger('jax').addHandler(Count())
logging.getLogger('jax').setLevel(logging.WARNING)
from jaxdl.config import apply_updates, load_config_file
from jaxdl.train.loop import fit
config = apply_updates(load_config_file(sys.argv[1]), json.loads(sys.argv[3]))
fit(config, sys.argv[2], show_progress=False)
print('COUNTS ' + json.dumps(dict(counts)))
'''


def compile_counts(experiment: str, workdir: Path, overrides: dict) -> dict:
    out = subprocess.run([sys.executable, '-c', COUNT_COMPILES, experiment, str(workdir), json.dumps(overrides)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.split('COUNTS ', 1)[1])


def steps(counts: dict) -> dict:
    return {name: counts.get(f'jit({name})', 0) for name in ('train_step', 'eval_step')}


def wall(args: list[str], env=None) -> float:
    start = time.perf_counter()
    subprocess.run(args, capture_output=True, check=True, cwd=ROOT, env=env)
    return time.perf_counter() - start


def time_to_first_step(experiment: str, workdir: Path) -> float:
    """Seconds from spawning `jaxdl train` to its first training record on disk."""
    records = workdir / 'metrics.jsonl'
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, '-m', 'jaxdl', 'train', experiment, '--workdir', str(workdir),
                                '--no-progress', '--config.train.log_every=1 steps'],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (records.exists() and records.read_text().strip()):
            if process.poll() is not None:
                raise RuntimeError('the run ended before its first record')
            time.sleep(0.02)
        return time.perf_counter() - start
    finally:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--experiment', default='jaxdl/experiments/digits_cnn.py')
    parser.add_argument('--duration', default='4 epochs', help='of the counted run (shorter than the experiment)')
    parser.add_argument('--repeats', type=int, default=3, help='of each start-up timing (the median is reported)')
    args = parser.parse_args()
    experiment = str((ROOT / args.experiment).resolve())
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # Validate and checkpoint every epoch, so the middle checkpoint exists to resume from.
        overrides = {'train.duration': args.duration, 'train.validate_every': '1 epoch',
                     'train.checkpoint_every': '1 epoch'}
        whole = compile_counts(experiment, tmp / 'whole', overrides)
        results['whole_run'] = steps(whole)
        results['whole_run_all'] = whole
        # A crash after the middle checkpoint: later checkpoints and the summary never got written.
        resumed_dir = tmp / 'resumed'
        shutil.copytree(tmp / 'whole', resumed_dir)
        saved = sorted(int(p.name) for p in (resumed_dir / 'checkpoints').iterdir() if p.name.isdigit())
        for step in saved[len(saved) // 2:]:
            shutil.rmtree(resumed_dir / 'checkpoints' / str(step))
        (resumed_dir / 'summary.json').unlink()
        results['resumed_from_step'] = saved[len(saved) // 2 - 1]
        results['resumed_run'] = steps(compile_counts(experiment, resumed_dir, overrides))

        median = lambda xs: sorted(xs)[len(xs) // 2]
        timings = {
            'import tensorflow': [sys.executable, '-c', 'import tensorflow'],
            'import jax': [sys.executable, '-c', 'import jax; jax.numpy.zeros(1)'],
            'jaxdl --help': [sys.executable, '-m', 'jaxdl', '--help'],
            'jaxdl datasets': [sys.executable, '-m', 'jaxdl', 'datasets'],
        }
        results['seconds'] = {name: round(median([wall(cmd) for _ in range(args.repeats)]), 2)
                              for name, cmd in timings.items()}
        results['seconds']['jaxdl train: first step on disk'] = round(median(
            [time_to_first_step(experiment, tmp / f'first_{i}') for i in range(args.repeats)]), 2)
    print(json.dumps(results, indent=2))


if __name__ == '__main__':
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    main()
