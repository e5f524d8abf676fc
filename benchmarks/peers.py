"""jaxdl's fit() against what users would pick instead: Keras 3 `model.fit` on its JAX backend and a PyTorch CPU
loop, on the same model (the small CNN: two 3x3 conv blocks of 32 and 64 with 2x2 max-pooling, dense 128, dense
10), the same digits training batches, SGD with momentum 0.9, batch 128.

    pip install keras torch            # peers only; not jaxdl dependencies (the test extra has torch)
    python benchmarks/peers.py --repeats 3

Each framework runs in its own fresh process (Keras picks its backend at import), alternating, for the same number
of epochs; the rate is images per second after the first epoch (compilation and warm-up excluded). jaxdl's is
read from fit()'s own records, as in fit_overhead.py. The peers read the batches from a file this script writes
once: they import neither jaxdl nor TensorFlow (torch 2.14 in one process with TensorFlow dies with SIGSEGV).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The training batches every framework sees (the digits train split, normalised as the jaxdl config does), written
# once by `write_batches`; each peer reads them with numpy alone.
DATA = r'''
import sys
import numpy as np
def digits_batches(batch):
    data = np.load(sys.argv[3])
    return data['x'], data['y']
'''


def write_batches(batch: int, path: Path) -> None:
    import numpy as np
    from jaxdl.config import apply_updates, default_config
    from jaxdl.data.pipeline import Pipeline
    config = apply_updates(default_config(), {'dataset.mean': (0.5,), 'dataset.std': (0.5,)})
    pipeline = Pipeline.for_config(config)
    stream = pipeline.train_batches(seed=0, global_batch=batch)
    batches = [next(stream) for _ in range(pipeline.steps_per_epoch(batch))]
    np.savez(path, x=np.concatenate([b['image'] for b in batches]), y=np.concatenate([b['label'] for b in batches]))


KERAS = DATA + r'''
import os, sys, time, json
import keras
batch, epochs = int(sys.argv[1]), int(sys.argv[2])
x, y = digits_batches(batch)
model = keras.Sequential([
    keras.Input((8, 8, 1)),
    keras.layers.Conv2D(32, 3, padding='same', activation='relu'), keras.layers.Conv2D(32, 3, padding='same', activation='relu'),
    keras.layers.MaxPooling2D(2),
    keras.layers.Conv2D(64, 3, padding='same', activation='relu'), keras.layers.Conv2D(64, 3, padding='same', activation='relu'),
    keras.layers.MaxPooling2D(2),
    keras.layers.Flatten(), keras.layers.Dense(128, activation='relu'), keras.layers.Dense(10)])
model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
ends = []
class Clock(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        ends.append(time.perf_counter())
model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[Clock()])
print(json.dumps({'rate': (epochs - 1) * len(x) / (ends[-1] - ends[0]), 'backend': keras.backend.backend()}))
'''

TORCH = DATA + r'''
import sys, time, json
import numpy as np, torch
from torch import nn
batch, epochs = int(sys.argv[1]), int(sys.argv[2])
x, y = digits_batches(batch)
x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
y = torch.from_numpy(y.astype(np.int64))
torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(64 * 2 * 2, 128), nn.ReLU(), nn.Linear(128, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
ends = []
for epoch in range(epochs):
    order = torch.randperm(len(x))
    for start in range(0, len(x), batch):
        idx = order[start:start + batch]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
    ends.append(time.perf_counter())
print(json.dumps({'rate': (epochs - 1) * len(x) / (ends[-1] - ends[0]), 'threads': torch.get_num_threads(),
                  'version': torch.__version__}))
'''


def peer(script: str, batch: int, epochs: int, batches: Path, env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, '-c', script, str(batch), str(epochs), str(batches)], capture_output=True,
                         text=True, env={**os.environ, **(env or {})})
    if out.returncode:
        raise SystemExit(f'a peer failed (exit {out.returncode}): {out.stderr[-2000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--epochs', type=int, default=31)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from fit_overhead import fit_rate
    rates = {'jaxdl fit()': [], 'keras 3 (jax) fit': [], 'pytorch (cpu)': []}
    details = {}
    with tempfile.TemporaryDirectory() as tmp:
        batches = Path(tmp) / 'digits_batches.npz'
        subprocess.run([sys.executable, '-c', f'import sys; sys.path.insert(0, {str(HERE)!r}); import peers; '
                        f'peers.write_batches({args.batch}, peers.Path({str(batches)!r}))'], check=True)
        for _ in range(args.repeats):
            rates['jaxdl fit()'].append(fit_rate('cnn', args.batch, args.epochs))
            keras = peer(KERAS, args.batch, args.epochs, batches, {'KERAS_BACKEND': 'jax'})
            rates['keras 3 (jax) fit'].append(keras['rate'])
            torch = peer(TORCH, args.batch, args.epochs, batches)
            rates['pytorch (cpu)'].append(torch['rate'])
            details = {'keras_backend': keras['backend'], 'torch': torch['version'], 'torch_threads': torch['threads']}
    medians = {k: statistics.median(v) for k, v in rates.items()}
    print(json.dumps({'batch': args.batch, 'epochs': args.epochs, **details,
                      'images_per_s': {k: round(v) for k, v in medians.items()},
                      'jaxdl_over_peer': {k: round(medians['jaxdl fit()'] / v, 3) for k, v in medians.items()
                                          if k != 'jaxdl fit()'},
                      'runs': {k: [round(r) for r in v] for k, v in rates.items()}}, indent=2))


if __name__ == '__main__':
    main()
