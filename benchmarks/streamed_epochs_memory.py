"""Does a streamed run's memory grow with its epochs? fit() on 400 JPEG files of 160x192 px (`jpeg_shapes`' drawing
at that size, ArrayRecord), trained at 96 px, batch 32, validated every epoch, in a fresh process: the anonymous
RSS and the peak RSS (VmHWM) after validations 1, 8, 16, 32, ... of one run.

    python benchmarks/streamed_epochs_memory.py --epochs 64

The dataset is prepared on first use into a temporary data dir (a minute).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from jaxdl.data.builders.jpeg_shapes import JpegShapes

HERE = Path(__file__).resolve().parent


class Jpeg400(JpegShapes):
    """A user's small JPEG dataset: 400 training images of 160x192 px."""
    SPLIT_SIZES = {'train': 400, 'validation': 100, 'test': 100}
    SIDES = (160, 192)


RUN = r'''
import json, sys
sys.path.insert(0, sys.argv[3])
from jaxdl.config import apply_updates, default_config
from jaxdl.data.pipeline import Pipeline
from jaxdl.train.loop import fit
marks, passes, evaluate = {}, [0], Pipeline.eval_batches

def memory():
    status = {l.split(':')[0]: int(l.split()[1]) // 1024 for l in open('/proc/self/status')
              if l.startswith(('VmHWM', 'RssAnon'))}
    return {'anonymous_rss_mb': status['RssAnon'], 'peak_rss_mb': status['VmHWM']}

def watched(self, split, global_batch):  # memory after each evaluation pass, read as the next one starts
    passes[0] += 1
    if passes[0] - 1 in (1, 8, 16, 32, 48, 64, 96, 128):
        marks[passes[0] - 1] = memory()
    return evaluate(self, split, global_batch)

Pipeline.eval_batches = watched
config = apply_updates(default_config(), {
    'dataset.name': 'streamed_epochs_memory:Jpeg400', 'dataset.source': 'stream', 'dataset.image_size': 96,
    'dataset.mean': (0.5,), 'dataset.std': (0.25,), 'model.options.features': (8, 16), 'model.options.dense': 32,
    'train.batch_size': 32, 'train.eval_batch_size': 32, 'train.duration': f'{sys.argv[1]} epochs'})
fit(config, sys.argv[2], show_progress=False)
marks['end'] = memory()
print(json.dumps(marks))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--epochs', type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, 'TFDS_DATA_DIR': str(Path(tmp) / 'data')}
        done = subprocess.run([sys.executable, '-c', RUN, str(args.epochs), str(Path(tmp) / 'run'), str(HERE)],
                              capture_output=True, text=True, env=env)
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        print(done.stdout.strip().splitlines()[-1], flush=True)


if __name__ == '__main__':
    main()
