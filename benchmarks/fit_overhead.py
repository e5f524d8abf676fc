"""fit() throughput against a minimal hand-written jitted loop: same model, optimizer and batches, one process.

    python benchmarks/fit_overhead.py                       # small CNN, batch 128
    python benchmarks/fit_overhead.py --model resnet --batch 64

fit() is timed as the difference between a long and a short run (the same set-up, compilation, final
validation, test and checkpoint cancel out), so its figure is the steady-state cost of its epochs: tf.data,
the step, metric accumulation, logging and periodic work. The hand-written loop trains on batches already in
memory with its own jitted step (softmax cross-entropy + the same optax chain), compile excluded. The two are
alternated, and the medians of several repetitions are compared as a ratio (>= 0.9 is the target).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import jax
import optax

from jaxdl.config import apply_updates, default_config
from jaxdl.data.pipeline import Pipeline
from jaxdl.models import build_model
from jaxdl.optim import build_optimizer
from jaxdl.train.loop import fit
from jaxdl.train.state import create_train_state


def make_config(model: str, batch: int, epochs: int):
    return apply_updates(default_config(), {
        'dataset.mean': (0.5,), 'dataset.std': (0.5,), 'model.name': model,
        'model.resnet.depth': 10, 'model.resnet.width': 16, 'model.resnet.stem': 'small',
        'train.batch_size': batch, 'train.duration': f'{epochs} epochs',
        # Validate and checkpoint once, at the end: both fits pay it, so the difference is pure training.
        'train.validate_every': f'{epochs} epochs', 'train.checkpoint_every': f'{epochs} epochs',
        'train.parallel': 'jit'})


def time_fit(model: str, batch: int, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        fit(make_config(model, batch, epochs), workdir, show_progress=False)
        return time.perf_counter() - start


def hand_written_loop(model_name: str, batch: int, steps: int) -> float:
    """Images per second of the simplest correct JAX training loop (compile excluded)."""
    config = make_config(model_name, batch, 1)
    pipeline = Pipeline(config.dataset, 'classification')
    stream = pipeline.train_batches(seed=0, global_batch=batch)
    batches = [(b['image'], b['label']) for b in (next(stream) for _ in range(pipeline.steps_per_epoch(batch)))]
    model = build_model(config.model, 10)
    tx, _ = build_optimizer(config.optimizer, len(batches), steps)
    state = create_train_state(model, tx, seed=0, image_shape=batches[0][0].shape[1:])
    params, model_state, opt_state = state.params, state.model_state, state.opt_state
    mutable = list(model_state)

    @jax.jit
    def step(params, model_state, opt_state, images, labels):
        def loss_fn(p):
            out = model.apply({'params': p, **model_state}, images, train=True, mutable=mutable or False)
            logits, new_state = out if mutable else (out, model_state)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), new_state
        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state, opt_state, loss

    jax.block_until_ready(step(params, model_state, opt_state, *batches[0]))  # compile
    start = time.perf_counter()
    for i in range(steps):
        params, model_state, opt_state, loss = step(params, model_state, opt_state, *batches[i % len(batches)])
    jax.block_until_ready(loss)
    return steps * batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='cnn', choices=['cnn', 'resnet'])
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--epochs', type=int, default=21, help='long fit; the short one is 1 epoch')
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    steps_per_epoch = 1258 // args.batch
    extra_images = (args.epochs - 1) * steps_per_epoch * args.batch
    fit_rates, hand_rates = [], []
    for _ in range(args.repeats):
        long_run, short_run = time_fit(args.model, args.batch, args.epochs), time_fit(args.model, args.batch, 1)
        fit_rates.append(extra_images / (long_run - short_run))
        hand_rates.append(hand_written_loop(args.model, args.batch, (args.epochs - 1) * steps_per_epoch))
    result = {'model': args.model, 'batch': args.batch, 'repeats': args.repeats, 'backend': jax.default_backend(),
              'fit_images_per_s': round(statistics.median(fit_rates), 1),
              'hand_loop_images_per_s': round(statistics.median(hand_rates), 1),
              'ratio_fit_over_hand': round(statistics.median(fit_rates) / statistics.median(hand_rates), 3),
              'fit_runs': [round(r, 1) for r in fit_rates], 'hand_runs': [round(r, 1) for r in hand_rates]}
    print(json.dumps(result))


if __name__ == '__main__':
    main()
