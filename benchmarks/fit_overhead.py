"""fit() throughput against a minimal hand-written jitted loop: same model, optimizer and batches, one process.

    python benchmarks/fit_overhead.py                       # small CNN, batch 128
    python benchmarks/fit_overhead.py --model resnet --batch 64 --epochs 8

fit()'s rate is read from its own metrics.jsonl: the images trained between a record after the first epoch
(compilation and warm-up are over) and the last one, over the `elapsed_s` between them. That window holds
everything fit does per step in steady state: tf.data, the step, metric accumulation, logging (every 10
steps), TensorBoard writes. The hand-written loop trains on batches already in memory with its own jitted step
(softmax cross-entropy + the same optax chain, the uint8 pixels normalised in the step as fit's is), compile
excluded. The two alternate; the medians of several repetitions are compared as a ratio (>= 0.98 is the target),
and so is each pair of runs (the median of those ratios; over six rounds it spread no narrower than the ratio of
medians, benchmarks/README.md, so on a shared machine judge the median over several invocations).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import jax
import optax

from jaxdl.config import apply_updates, default_config
from jaxdl.data.model_input import ImageFormat
from jaxdl.data.pipeline import Pipeline
from jaxdl.logging import read_jsonl
from jaxdl.models import build_model
from jaxdl.config import Plan
from jaxdl.optim import build_optimizer
from jaxdl.train.loop import fit
from jaxdl.train.state import create_train_state
from jaxdl.train.runners import compiler_options


def make_config(model: str, batch: int, epochs: int):
    return apply_updates(default_config(), {
        'dataset.mean': (0.5,), 'dataset.std': (0.5,), 'model.name': model,
        'model.options': {'depth': 10, 'width': 16, 'stem': 'small'} if model == 'resnet' else {},
        'train.batch_size': batch, 'train.duration': f'{epochs} epochs',
        # Validate and checkpoint once, at the end (outside the timed window), as a hand-written loop would.
        'train.validate_every': f'{epochs} epochs', 'train.checkpoint_every': f'{epochs} epochs',
        'train.parallel': 'jit'})


def fit_rate(model: str, batch: int, epochs: int) -> float:
    """Steady-state images per second of fit(), from the timestamps of its own training records."""
    with tempfile.TemporaryDirectory() as workdir:
        fit(make_config(model, batch, epochs), workdir, show_progress=False)
        records = [r for r in read_jsonl(Path(workdir) / 'metrics.jsonl') if r['split'] == 'train']
    steps_per_epoch = 1258 // batch
    window = [r for r in records if r['step'] >= steps_per_epoch]
    first, last = window[0], window[-1]
    return (last['step'] - first['step']) * batch / (last['elapsed_s'] - first['elapsed_s'])


def hand_written_loop(model_name: str, batch: int, steps: int) -> float:
    """Images per second of the simplest correct JAX training loop (compile excluded)."""
    config = make_config(model_name, batch, 1)
    pipeline = Pipeline.for_config(config)
    stream = pipeline.train_batches(seed=0, global_batch=batch)
    batches = [(b['image'], b['label']) for b in (next(stream) for _ in range(pipeline.steps_per_epoch(batch)))]
    model = build_model(config.model, 10)
    config.train.duration = f'{steps} steps'
    tx, _ = build_optimizer(config.optimizer, Plan.resolve(config, len(batches)))
    state = create_train_state(model, tx, seed=0, image_shape=batches[0][0].shape[1:])
    params, model_state, opt_state = state.params, state.model_state, state.opt_state
    mutable = list(model_state)

    normalize = ImageFormat.of(config.dataset).normalization  # the batches are uint8 pixels, as fit() gets them

    @partial(jax.jit, compiler_options=compiler_options(config.train.cpu_convolutions))  # as fit() compiles
    def step(params, model_state, opt_state, images, labels):
        images = normalize(images)

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
    parser.add_argument('--epochs', type=int, default=31)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    steps_per_epoch = 1258 // args.batch
    fit_rates, hand_rates = [], []
    for _ in range(args.repeats):
        fit_rates.append(fit_rate(args.model, args.batch, args.epochs))
        hand_rates.append(hand_written_loop(args.model, args.batch, (args.epochs - 1) * steps_per_epoch))
    result = {'model': args.model, 'batch': args.batch, 'repeats': args.repeats, 'backend': jax.default_backend(),
              'fit_images_per_s': round(statistics.median(fit_rates), 1),
              'hand_loop_images_per_s': round(statistics.median(hand_rates), 1),
              'ratio_fit_over_hand': round(statistics.median(fit_rates) / statistics.median(hand_rates), 3),
              # each fit() run over the hand loop run right after it
              'median_pair_ratio': round(statistics.median(f / h for f, h in zip(fit_rates, hand_rates)), 3),
              'fit_runs': [round(r, 1) for r in fit_rates], 'hand_runs': [round(r, 1) for r in hand_rates]}
    print(json.dumps(result))


if __name__ == '__main__':
    main()
