"""The GPU checks in one script, for a machine with a GPU and jax with CUDA, with or without TensorFlow:

    python benchmarks/gpu.py --out gpu.json          # about 5 minutes on one H100/H200
    python benchmarks/gpu.py --smoke                 # tiny sizes: checks the script itself (CPU is fine)

1. jaxdl's jitted train step against a hand-written one (the same model, optimizer and batch): the ratio of
   images/s. jaxdl's step adds the non-finite guard and the metric sums; the target is >= 0.95.
2. The ImageNet ResNet-50 and ViT-B/16 train steps in bfloat16 (224x224, Adam): images/s, and what a run
   reports at its start (jaxdl.train.costs): the FLOPs XLA counts for the compiled step, its memory, and MFU,
   the share of the device's peak bf16 rate (the table's, e.g. 989 TFLOP/s dense for the H100 and H200 SXM,
   or --peak-tflops).
3. The fsdp runner against the replicated one on the devices present (on one GPU the mesh has one device: the
   ratio shows what the sharded path costs when it shards nothing).
4. fit() end to end on the digits ResNet, where TensorFlow is installed (its input pipeline needs it).
5. The streaming ImageNet-style pipeline (`jpeg_shapes`, JPEG, random-resized crop) on the machine's cores
   feeding the ResNet-50 step at 224x224 through the loop's device prefetch, where TensorFlow is installed:
   images/s, the share of time spent waiting for data and the bytes a batch carries to the device
   (`jpeg_shapes` is prepared on first use, about a minute).
6. Reruns (`train.deterministic`): the same ResNet training (fixed batches, bf16) in four fresh processes, two
   with XLA's deterministic GPU ops and two without; whether each pair's parameters agree bit for bit, and the
   images/s the setting costs (XLA reads the flag when its backend starts, hence the processes).
7. Host to device, no TensorFlow needed: the ResNet-50 step at 224x224 fed fresh host batches (a new numpy array
   each step, so every step copies), as float32 images normalised on the host (before issue 26) and as uint8
   pixels normalised in the step, each placed at its step or two ahead (`train/prefetch.py`): images/s, the share
   of the loop's time spent waiting for a batch, and bytes per batch.

The step path imports no TensorFlow (tests/test_models_and_step.py holds that). Each figure is printed as a JSON
line as soon as it is measured, so a run stopped at its time limit still reports what it finished.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from functools import partial

import jax
import numpy as np
import optax

import jaxdl
from jaxdl.config import apply_updates
from jaxdl.logging import read_jsonl
from jaxdl.train.state import abstract_train_state, create_train_state
from jaxdl.train import costs
from jaxdl.train.prefetch import DEPTH, prefetch_to_device
from jaxdl.train.runners import make_runner


def report(results: list, record: dict) -> None:
    print(json.dumps(record), flush=True)
    results.append(record)


def setup(model: str, options: dict, image: int, batch: int, dtype: str, classes: int = 1000):
    config = apply_updates(jaxdl.default_config(), {'model.name': model, 'model.options': options,
                                                    'model.dtype': dtype, 'optimizer.name': 'adam',
                                                    'train.duration': '1000 steps'})
    task = jaxdl.build_task(config.task, classes)
    module = jaxdl.build_model(config.model, task.num_outputs, task.head_options)
    tx, _ = jaxdl.build_optimizer(config.optimizer, jaxdl.Plan.resolve(config, 100))
    rng = np.random.default_rng(0)
    data = {'image': rng.normal(size=(batch, image, image, 3)).astype(np.float32),
            'label': rng.integers(0, classes, batch).astype(np.int32), 'valid': np.ones(batch, bool)}
    return task, module, tx, data


def timed(step, state, data, steps: int) -> tuple[float, object]:
    """Seconds per step (median of three windows) after two warm-up steps; the state threads through."""
    for _ in range(2):
        state, out = step(state, data)
    jax.block_until_ready(out)
    windows = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(steps):
            state, out = step(state, data)
        jax.block_until_ready(out)
        windows.append((time.perf_counter() - start) / steps)
    return float(np.median(windows)), state


def hand_written_step(module, tx):
    """The simplest correct step: cross-entropy, value_and_grad, the optax update, BatchNorm statistics kept."""
    def step(carry, batch):
        params, model_state, opt_state = carry

        def loss_fn(p):
            logits, new_state = module.apply({'params': p, **model_state}, batch['image'], train=True,
                                             mutable=list(model_state))
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
            return loss, new_state
        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), new_state, opt_state), loss
    return jax.jit(step, donate_argnums=0)


def step_ratio(results, model, options, image, batch, dtype, steps):
    task, module, tx, data = setup(model, options, image, batch, dtype)
    device = jax.devices()[0]
    data = jax.device_put(data, device)
    state = create_train_state(module, tx, seed=0, image_shape=(image, image, 3))
    jaxdl_step = jax.jit(partial(jaxdl.train_step, task=task), donate_argnums=0)
    seconds, _ = timed(jaxdl_step, state, data, steps)
    state = create_train_state(module, tx, seed=0, image_shape=(image, image, 3))
    hand = hand_written_step(module, tx)
    hand_seconds, _ = timed(hand, (state.params, state.model_state, state.opt_state), data, steps)
    report(results, {'check': 'jaxdl step / hand-written step', 'model': model, 'dtype': dtype, 'batch': batch,
                     'jaxdl_images_per_s': round(batch / seconds, 1), 'hand_images_per_s': round(batch / hand_seconds, 1),
                     'ratio': round(hand_seconds / seconds, 3)})


def model_rate(results, name, model, options, image, batch, dtype, steps, peak_tflops):
    """images/s of the jit runner's step, and what jaxdl.train.costs reports for it at a run's start: FLOPs per
    step (XLA's cost analysis), the compiled memory and MFU against the device's peak (its table, or
    --peak-tflops)."""
    task, module, tx, data = setup(model, options, image, batch, dtype)
    runner = make_runner('jit', task)
    state = runner.place_state(create_train_state(module, tx, seed=0, image_shape=(image, image, 3)))
    try:
        step_costs = costs.compiled_step_costs(runner, state, data) or {}
    except Exception as e:  # a backend without cost or memory analysis
        step_costs = {'error': f'{type(e).__name__}: {e}'[:200]}
    seconds, _ = timed(runner.train, state, data, steps)
    device = jax.devices()[0]
    peak = peak_tflops or costs.peak_tflops(device.device_kind, dtype)
    flops = step_costs.get('flops_per_device')
    record = {'check': 'train step', 'model': name, 'dtype': dtype, 'image': image, 'batch': batch,
              'images_per_s': round(batch / seconds, 1), 'step_ms': round(1000 * seconds, 2),
              'gflops_per_step': float(f'{flops / 1e9:.4g}') if flops else None,
              'memory_mb': {k: round(v / 2**20, 1) for k, v in (step_costs.get('memory_bytes') or {}).items()},
              'peak_tflops': peak}
    if flops:
        record['tflop_per_s'] = round(flops / seconds / 1e12, 1)
        record['mfu'] = round(flops / seconds / (peak * 1e12), 3) if peak else None
    report(results, record)


def fsdp_against_replicated(results, model, options, image, batch, dtype, steps):
    task, module, tx, data = setup(model, options, image, batch, dtype)
    abstract = abstract_train_state(module, tx, image_shape=(image, image, 3))
    rates = {}
    for kind in ('sharded', 'fsdp'):
        runner = make_runner(kind, task, **({'fsdp_min_size': 1} if kind == 'fsdp' else {}))
        state = runner.place_state(create_train_state(module, tx, seed=0, image_shape=(image, image, 3),
                                                      shardings=runner.state_shardings(abstract)))
        seconds, _ = timed(runner.train, state, data, steps)
        rates[kind] = batch / seconds
    report(results, {'check': 'fsdp / replicated', 'model': model, 'devices': jax.device_count(),
                     'replicated_images_per_s': round(rates['sharded'], 1), 'fsdp_images_per_s': round(rates['fsdp'], 1),
                     'ratio': round(rates['fsdp'] / rates['sharded'], 3)})


def fit_end_to_end(results, epochs: int):
    try:
        import jaxdl.data  # noqa: F401  (sets TensorFlow's environment before it loads)
        import tensorflow  # noqa: F401  (the input pipeline's; the step path never needs it)
    except ImportError:
        report(results, {'check': 'fit end to end', 'skipped': 'no TensorFlow on this machine'})
        return
    import tempfile
    from pathlib import Path
    from jaxdl.config import load_config_file
    config = load_config_file(str(Path(__file__).resolve().parents[1] / 'jaxdl' / 'experiments' / 'digits_resnet.py'))
    apply_updates(config, {'train.duration': f'{epochs} epochs', 'train.validate_every': f'{epochs} epochs',
                           'train.checkpoint_every': f'{epochs} epochs'})
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        result = jaxdl.fit(config, workdir, show_progress=False)
        wall = time.perf_counter() - start
        rows = [r for r in read_jsonl(Path(workdir) / 'metrics.jsonl') if r['split'] == 'train'][1:]
    median = lambda key: round(float(np.median([r[key] for r in rows if r.get(key) is not None])), 4) \
        if any(r.get(key) is not None for r in rows) else None
    report(results, {'check': 'fit end to end', 'experiment': 'digits_resnet', 'epochs': epochs,
                     'wall_s': round(wall, 1), 'train_time_s': round(result.summary['train_time_s'], 1),
                     'test_accuracy': round(result.summary['test']['accuracy'], 4),
                     # the training records' throughput (jaxdl.train.throughput), median over the run
                     'images_per_s': median('images_per_s'), 'input_wait_share': median('input_wait_share'),
                     'mfu': median('mfu')})


def streamed_resnet50(results, image: int, batch: int, steps: int, model: tuple) -> None:
    """The streaming JPEG pipeline (jaxdl/experiments/jpeg_shapes_resnet.py at `image` px) feeding the ResNet step on
    this machine's cores: images/s and the share of the loop's time spent waiting in next() for data."""
    try:
        import jaxdl.data  # noqa: F401  (sets TensorFlow's environment before it loads)
        import tensorflow  # noqa: F401
    except ImportError:
        report(results, {'check': 'streamed input feeding ResNet-50', 'skipped': 'no TensorFlow on this machine'})
        return
    from pathlib import Path
    from jaxdl.config import load_config_file
    from jaxdl.data.pipeline import Pipeline
    from jaxdl.train.state import state_from_config
    config = load_config_file(str(Path(__file__).resolve().parents[1] / 'jaxdl' / 'experiments' / 'jpeg_shapes_resnet.py'))
    apply_updates(config, {'dataset.image_size': image, 'model.name': model[0], 'model.options': model[1],
                           'model.dtype': 'bfloat16', 'train.batch_size': batch})
    pipeline = Pipeline.for_config(config)
    runner = make_runner('jit', pipeline.task)
    state, _ = state_from_config(config, pipeline.task, image_shape=pipeline.spec.image_shape,
                                 plan=jaxdl.Plan.resolve(config, pipeline.steps_per_epoch(batch)))
    state = runner.place_state(state)
    host = next(pipeline.train_batches(seed=0, global_batch=batch))
    batches = prefetch_to_device(pipeline.train_batches(seed=0, global_batch=batch), runner.place_batch)
    state, rate, wait = fed_rate(runner, state, batches, batch, steps, warmup=3)
    report(results, {'check': 'streamed input feeding ResNet-50', 'image': image, 'batch': batch,
                     'images_per_s': round(rate, 1), 'share_waiting_for_data': round(wait, 3),
                     'bytes_per_batch': sum(v.nbytes for v in host.values()), 'cores': os.cpu_count()})


def fed_rate(runner, state, batches, batch: int, steps: int, warmup: int = 2):
    """(state, images/s, share of the loop's time spent in next()) of `steps` train steps fed by `batches`,
    (host, placed) pairs, after `warmup` steps."""
    for _ in range(warmup):
        state, metrics = runner.train(state, next(batches)[1])
    jax.block_until_ready(metrics)
    waiting, start = 0.0, time.perf_counter()
    for _ in range(steps):
        before = time.perf_counter()
        _, placed = next(batches)
        waiting += time.perf_counter() - before
        state, metrics = runner.train(state, placed)
    jax.block_until_ready(metrics)
    wall = time.perf_counter() - start
    return state, batch * steps / wall, waiting / wall


def host_to_device(results, model, options, image, batch, steps) -> None:
    """The train step fed a new host batch every step: float32 normalised images (the wire before issue 26) or
    uint8 pixels (normalised in the step), placed at the step or `prefetch.DEPTH` ahead. Each variant's images/s
    and share of the loop's time in next() (the wait for a placed batch), alternating, medians of three."""
    task, module, tx, data = setup(model, options, image, batch, 'bfloat16')
    rng = np.random.default_rng(1)
    pixels = [rng.integers(0, 256, size=(batch, image, image, 3), dtype=np.uint8) for _ in range(4)]
    host = {'uint8': [{**data, 'image': p} for p in pixels],
            'float32': [{**data, 'image': ((p / 255.0 - 0.5) / 0.25).astype(np.float32)} for p in pixels]}
    runner = make_runner('jit', task)
    state = runner.place_state(create_train_state(module, tx, seed=0, image_shape=(image, image, 3)))

    def fresh(wire):  # a new array each step: nothing is cached on the device between steps
        for k in range(2**62):
            b = host[wire][k % 4]
            yield {**b, 'image': b['image'].copy()}

    def run(state, wire, ahead):
        batches = fresh(wire)
        placed = prefetch_to_device(batches, runner.place_batch) if ahead else ((b, b) for b in batches)
        return fed_rate(runner, state, placed, batch, steps)

    variants = [(wire, ahead) for wire in ('float32', 'uint8') for ahead in (False, True)]
    rates = {v: [] for v in variants}
    waits = {v: [] for v in variants}
    for _ in range(3):
        for v in variants:
            state, rate, wait = run(state, *v)
            rates[v].append(rate)
            waits[v].append(wait)
    for wire, ahead in variants:
        report(results, {'check': 'host to device', 'model': model, 'image': image, 'batch': batch, 'wire': wire,
                         'prefetch': DEPTH if ahead else 0,
                         'bytes_per_batch': sum(v.nbytes for v in host[wire][0].values()),
                         'images_per_s': round(float(np.median(rates[(wire, ahead)])), 1),
                         'share_waiting_for_data': round(float(np.median(waits[(wire, ahead)])), 3)})


def determinism_worker(deterministic: bool, model, options, image, batch, dtype, steps) -> None:
    """One fresh process's training: a digest of the parameters after `steps` steps, and the images/s."""
    import hashlib
    from jaxdl import determinism
    determinism.request(deterministic)  # before this process's first JAX computation
    task, module, tx, data = setup(model, options, image, batch, dtype)
    state = create_train_state(module, tx, seed=0, image_shape=(image, image, 3))
    step = jax.jit(partial(jaxdl.train_step, task=task), donate_argnums=0)
    seconds, state = timed(step, state, jax.device_put(data, jax.devices()[0]), steps)
    digest = hashlib.sha256(b''.join(np.asarray(leaf).tobytes() for leaf in jax.tree.leaves(state.params)))
    print(json.dumps({'digest': digest.hexdigest(), 'images_per_s': batch / seconds,
                      'flags': os.environ.get('XLA_FLAGS', '')}), flush=True)


def reruns(results, model, options, image, batch, dtype, steps, smoke: bool) -> None:
    import subprocess
    import sys
    runs = {}
    for deterministic in (True, False, True, False):  # alternated, so drift in the machine hits both alike
        command = [sys.executable, __file__, '--determinism-worker', 'on' if deterministic else 'off'] + \
            (['--smoke'] if smoke else [])
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode:
            report(results, {'check': 'reruns', 'error': done.stderr[-1500:]})
            return
        runs.setdefault(deterministic, []).append(json.loads(done.stdout.strip().splitlines()[-1]))
    rate = lambda d: float(np.mean([r['images_per_s'] for r in runs[d]]))
    report(results, {'check': 'reruns: parameters after the same training twice', 'model': model, 'dtype': dtype,
                     'image': image, 'batch': batch, 'steps': 2 + 3 * steps,
                     'bit_identical_with_deterministic_ops': runs[True][0]['digest'] == runs[True][1]['digest'],
                     'bit_identical_without': runs[False][0]['digest'] == runs[False][1]['digest'],
                     'images_per_s_with': round(rate(True), 1), 'images_per_s_without': round(rate(False), 1),
                     'cost_ratio': round(rate(True) / rate(False), 3)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--smoke', action='store_true', help='tiny models and images: checks the script, not the GPU')
    parser.add_argument('--peak-tflops', type=float, default=0.0,
                        help="the device's peak dense TFLOP/s (0: jaxdl.train.costs' table by device kind)")
    parser.add_argument('--out', help='also write every record to this JSON file')
    parser.add_argument('--determinism-worker', choices=('on', 'off'), help=argparse.SUPPRESS)  # check 6's processes
    args = parser.parse_args()
    results = []
    if args.smoke:
        image, batch, steps, epochs = 32, 4, 2, 1
        resnet = ('resnet', {'depth': 18, 'width': 8})
        vit = ('vit', {'size': 'tiny', 'patch': 8, 'depth': 2})
    else:
        image, batch, steps, epochs = 224, 128, 20, 5
        resnet = ('resnet', {'depth': 50})
        vit = ('vit', {'size': 'base', 'patch': 16})
    if args.determinism_worker:
        determinism_worker(args.determinism_worker == 'on', *resnet, image, batch, 'bfloat16', steps)
        return
    report(results, {'check': 'machine', 'backend': jax.default_backend(),
                     'devices': [d.device_kind for d in jax.devices()], 'jax': jax.__version__})
    step_ratio(results, *resnet, image, batch, 'bfloat16', steps)
    model_rate(results, 'ResNet-50' if not args.smoke else 'ResNet-18/8', *resnet, image, batch, 'bfloat16', steps,
               args.peak_tflops)
    model_rate(results, 'ViT-B/16' if not args.smoke else 'ViT-tiny/8', *vit, image, batch, 'bfloat16', steps,
               args.peak_tflops)
    fsdp_against_replicated(results, *vit, image, batch, 'bfloat16', steps)
    reruns(results, *resnet, image, batch, 'bfloat16', steps, args.smoke)
    fit_end_to_end(results, epochs)
    streamed_resnet50(results, image, batch, 4 * steps, resnet)
    host_to_device(results, *resnet, image, batch, steps)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
