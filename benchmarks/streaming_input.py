"""The streaming input path at scale: memory against dataset size, images/s per core against the JPEG decoder,
and time to the first batch of a resumed run.

    python benchmarks/streaming_input.py memory        # peak RSS, 1x / 4x / 16x, in memory vs streamed; and:
    python benchmarks/streaming_input.py builtin-memory  # in memory on digits, shapes, jpeg_shapes: float32 vs uint8
    python benchmarks/streaming_input.py throughput    # images/s per core at 224x224 vs tf.io.decode_jpeg alone
    python benchmarks/streaming_input.py resume        # first batch at the start vs at 90% of an epoch

The data is `jpeg_shapes` (JPEG images 128-224 px a side, ArrayRecord) at three scales: 500 ("1x"), 2000 and 8000
training images, prepared on first use into $TFDS_DATA_DIR (about 1.5 minutes, 100 MB). Every figure is measured in
a fresh process (peak RSS only grows; the per-core figures pin the process to one core before TensorFlow starts).

memory: one epoch of training batches and one pass of evaluation, at image_size 224, batch 32.
throughput: one core, on JPEG files of 320-512 px a side (ImageNet's typical size; 1000 images) and of the
  built-in's 128-224 px; the ceiling reads the same records in the same random order and runs tf.io.decode_jpeg on
  each (parse included; the maximum pixel is taken, so no decoding can be optimised away), nothing else; the pipeline is the training stream as shipped: random-resized crop
  (decode_and_crop_jpeg), resize to 224, flip, normalise, batch. Then the cores a ResNet-50 step at 3,000 images/s
  needs (with the 3x headroom the input is held to, at the ImageNet-sized files), and the pipeline on every core here against this machine's
  train step of the small CNN at 224.
resume: `Pipeline.for_config` + `train_batches(start_step)` to the first batch, at step 0 and at 90% of an epoch,
  alternating, five times each, medians; both paths.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCALES = {'1x': 'JpegShapes1x', '4x': 'JpegShapes4x', '16x': 'JpegShapes16x', 'large': 'JpegShapesLarge'}


@functools.cache
def _builders():  # made once: TFDS registers a builder class by its name
    from jaxdl.data.builders.jpeg_shapes import JpegShapes

    class JpegShapes1x(JpegShapes):
        SPLIT_SIZES = {'train': 500, 'validation': 50, 'test': 100}

    class JpegShapes4x(JpegShapes1x):
        SPLIT_SIZES = {'train': 2000, 'validation': 50, 'test': 100}

    class JpegShapes16x(JpegShapes1x):
        SPLIT_SIZES = {'train': 8000, 'validation': 50, 'test': 100}

    class JpegShapesLarge(JpegShapes1x):  # ImageNet's typical size (its median image is about 500x375)
        SPLIT_SIZES = {'train': 1000, 'validation': 50, 'test': 100}
        SIDES = (320, 512)
    return {c.__name__: c for c in (JpegShapes1x, JpegShapes4x, JpegShapes16x, JpegShapesLarge)}


def __getattr__(name):  # 'streaming_input:JpegShapes4x' as a dataset.name resolves here
    builders = _builders()
    if name in builders:
        return builders[name]
    raise AttributeError(name)


def config_for(scale: str, source: str, image_size: int = 224, crop: bool = True):
    from jaxdl.config import default_config
    c = default_config()
    c.dataset.name = f'streaming_input:{SCALES[scale]}'
    c.dataset.source, c.dataset.image_size = source, image_size
    c.dataset.mean, c.dataset.std = (0.5,), (0.25,)
    if source == 'stream' and crop:
        c.dataset.augment.random_resized_crop = True
        c.dataset.center_crop = 0.875
    c.dataset.augment.flip_left_right = True
    return c


def in_subprocess(*args) -> dict:
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([HERE, os.environ.get('PYTHONPATH', '')])}
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- measurements, each in its own process
def peak(scale: str, source: str) -> dict:
    from jaxdl.data.pipeline import Pipeline
    pipeline = Pipeline.for_config(config_for(scale, source))
    start = time.perf_counter()
    batches = pipeline.train_batches(seed=0, global_batch=32)
    for _ in range(pipeline.steps_per_epoch(32)):
        next(batches)
    for _ in pipeline.eval_batches('test', 32):
        pass
    # VmHWM: this process's peak RSS (ru_maxrss would also count the parent's size, copied at fork)
    peak_kb = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM'))
    return {'peak_mb': peak_kb // 1024,
            'epoch_s': round(time.perf_counter() - start, 1)}


def one_core_rates(scale: str, batches: int) -> dict:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import numpy as np
    import tensorflow as tf
    from jaxdl.data.pipeline import Pipeline
    pipeline = Pipeline.for_config(config_for(scale, 'stream'))
    before = Pipeline.for_config(config_for(scale, 'stream'), uint8=False)  # the float32 wire, before issue 26
    sampler, records = pipeline.source.sampler(seed=0, global_batch=32), pipeline.source.records('train')
    features = pipeline.builder.info.features

    def ceiling_dataset():
        def step(s):
            return records_of(sampler.step_indices(s, 0, 32)['index'])
        records_of = lambda i: tf.ensure_shape(tf.numpy_function(records.read, [i], tf.string, stateful=False), [32])
        decode = lambda r: tf.io.decode_jpeg(features.deserialize_example(
            r, decoders={'image': __import__('tensorflow_datasets').decode.SkipDecoding()})['image'], channels=3)
        # reduce_max reads every decoded pixel, so nothing of the decode can be optimised away
        return (tf.data.Dataset.range(2 ** 40).map(step, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
                .map(lambda r: tf.reduce_max(decode(r)), num_parallel_calls=tf.data.AUTOTUNE)
                .batch(32).prefetch(tf.data.AUTOTUNE))

    def rate(iterator, n):
        for _ in range(3):
            next(iterator)
        start = time.perf_counter()
        for _ in range(n):
            next(iterator)
        return 32 * n / (time.perf_counter() - start)
    rates = {'ceiling': [], 'pipeline': [], 'float32_pipeline': []}
    ceiling, shipped = ceiling_dataset().as_numpy_iterator(), pipeline.train_batches(seed=0, global_batch=32)
    float_batches = before.train_batches(seed=0, global_batch=32)
    for _ in range(5):  # alternating windows
        rates['ceiling'].append(rate(ceiling, batches))
        rates['pipeline'].append(rate(shipped, batches))
        rates['float32_pipeline'].append(rate(float_batches, batches))
    sizes = {'bytes_per_batch': batch_bytes(next(shipped)), 'float32_bytes_per_batch': batch_bytes(next(float_batches))}
    return {**{k: round(float(np.median(v)), 1) for k, v in rates.items()}, **sizes}


def batch_bytes(batch: dict) -> int:
    """What a batch carries host to device (the valid flags too)."""
    return int(sum(v.nbytes for v in batch.values()))


EXPERIMENT_OF = {'digits': 'digits_cnn', 'shapes': 'shapes_segmentation', 'jpeg_shapes': 'jpeg_shapes_resnet'}


def builtin_config(name: str):
    """A built-in dataset read in memory, as its experiment reads it (jpeg_shapes' without the random-resized
    crop, which only the stream has: its evaluation transform, the centre crop at 96 px, for every split)."""
    from jaxdl.config import load_config_file
    c = load_config_file(os.path.join(HERE, '..', 'jaxdl', 'experiments', f'{EXPERIMENT_OF[name]}.py'))
    c.dataset.source, c.dataset.augment.random_resized_crop = 'memory', False
    return c


def builtin_peak(name: str, wire: str) -> dict:
    """Peak RSS over one epoch of training batches and one evaluation pass, in memory, on `wire`."""
    from jaxdl.data.pipeline import Pipeline
    pipeline = Pipeline.for_config(builtin_config(name), uint8=wire == 'uint8')
    batches = pipeline.train_batches(seed=0, global_batch=32)
    for _ in range(pipeline.steps_per_epoch(32)):
        batch = next(batches)
    for _ in pipeline.eval_batches('test', 32):
        pass
    peak_kb = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM'))
    return {'peak_mb': peak_kb // 1024, 'bytes_per_batch': batch_bytes(batch), 'image_shape': pipeline.spec.image_shape,
            'train_images': pipeline.size(pipeline.cfg.train_split)}


def all_cores_rate(scale: str, batches: int) -> dict:
    from jaxdl.data.pipeline import Pipeline
    shipped = Pipeline.for_config(config_for(scale, 'stream')).train_batches(seed=0, global_batch=32)
    for _ in range(3):
        next(shipped)
    start = time.perf_counter()
    for _ in range(batches):
        next(shipped)
    return {'images_per_s': round(32 * batches / (time.perf_counter() - start), 1), 'cores': os.cpu_count()}


def cnn_step_rate(steps: int) -> dict:
    import jax
    import numpy as np
    import jaxdl
    config = config_for('1x', 'stream')
    task = jaxdl.build_task(config.task, 5)
    from jaxdl.train.state import state_from_config
    from jaxdl.train.runners import make_runner
    from jaxdl.config import Plan
    state, _ = state_from_config(config, task, image_shape=(224, 224, 3), plan=Plan.resolve(config, 100))
    runner = make_runner('jit', task)
    state = runner.place_state(state)
    rng = np.random.default_rng(0)
    batch = {'image': rng.normal(size=(32, 224, 224, 3)).astype(np.float32),
             'label': rng.integers(0, 5, 32).astype(np.int32), 'valid': np.ones(32, bool)}
    for _ in range(2):
        state, metrics = runner.train(state, batch)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = runner.train(state, batch)
    jax.block_until_ready(metrics)
    return {'images_per_s': round(32 * steps / (time.perf_counter() - start), 1)}


def first_batch_s(scale: str, source: str, fraction: float) -> dict:
    from jaxdl.data.pipeline import Pipeline
    start = time.perf_counter()
    pipeline = Pipeline.for_config(config_for(scale, source))
    step = int(fraction * pipeline.steps_per_epoch(32))
    next(pipeline.train_batches(seed=0, global_batch=32, start_step=step))
    return {'seconds': round(time.perf_counter() - start, 3), 'step': step}


# -- the reports
def prepare_all() -> None:
    for scale in SCALES:
        in_subprocess('_prepare', scale)


def report_memory() -> None:
    rows = []
    for scale in ('1x', '4x', '16x'):
        for source in ('memory', 'stream'):
            rows.append({'scale': scale, 'source': source, **in_subprocess('_peak', scale, source)})
            print(json.dumps(rows[-1]), flush=True)
    report_builtin_memory()


def report_builtin_memory() -> None:
    """The in-memory path on the built-ins, the float32 wire (before issue 26) and uint8 alternating."""
    for name in ('digits', 'shapes', 'jpeg_shapes'):
        for wire in ('float32', 'uint8'):
            print(json.dumps({'dataset': name, 'wire': wire, **in_subprocess('_builtin_peak', name, wire)}), flush=True)


def report_throughput(batches: int) -> None:
    ones = {}
    for scale, sources in (('large', '320-512 px'), ('4x', '128-224 px')):
        one = ones[scale] = in_subprocess('_one_core', scale, str(batches))
        one['pipeline_over_ceiling'] = round(one['pipeline'] / one['ceiling'], 3)
        one['float32_pipeline_over_ceiling'] = round(one['float32_pipeline'] / one['ceiling'], 3)
        print(json.dumps({f'one core, images/s, JPEG files of {sources}': one}), flush=True)
    cores_for_resnet50 = 3 * 3000 / ones['large']['pipeline']  # ImageNet-sized files
    print(json.dumps({'cores to feed a 3,000 images/s ResNet-50 step with 3x headroom': round(cores_for_resnet50, 1)}))
    everything = in_subprocess('_all_cores', '4x', str(batches))
    step = in_subprocess('_cnn_step', '10')
    print(json.dumps({'all cores here': everything, 'small CNN step at 224, images/s': step,
                      'headroom': round(everything['images_per_s'] / step['images_per_s'], 1)}), flush=True)


def report_resume(repeats: int) -> None:
    import statistics
    for source in ('stream', 'memory'):
        times = {0.0: [], 0.9: []}
        for _ in range(repeats):
            for fraction in times:
                times[fraction].append(in_subprocess('_first_batch', '4x', source, str(fraction))['seconds'])
        start, late = statistics.median(times[0.0]), statistics.median(times[0.9])
        print(json.dumps({'source': source, 'first batch at epoch start, s': start, 'at 90%, s': late,
                          'ratio': round(late / start, 3), 'all': {str(k): v for k, v in times.items()}}), flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith('_'):  # a measurement in this fresh process
        what, args = sys.argv[1], sys.argv[2:]
        if what == '_prepare':
            from jaxdl.data.pipeline import get_builder
            get_builder(config_for(args[0], 'stream').dataset)
            result = {}
        else:
            result = {'_peak': lambda: peak(*args), '_one_core': lambda: one_core_rates(args[0], int(args[1])),
                      '_all_cores': lambda: all_cores_rate(args[0], int(args[1])),
                      '_cnn_step': lambda: cnn_step_rate(int(args[0])),
                      '_builtin_peak': lambda: builtin_peak(args[0], args[1]),
                      '_first_batch': lambda: first_batch_s(args[0], args[1], float(args[2]))}[what]()
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('what', choices=('memory', 'builtin-memory', 'throughput', 'resume', 'all'))
    parser.add_argument('--batches', type=int, default=60)
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    prepare_all()
    if args.what in ('memory', 'all'):
        report_memory()
    if args.what == 'builtin-memory':
        report_builtin_memory()
    if args.what in ('throughput', 'all'):
        report_throughput(args.batches)
    if args.what in ('resume', 'all'):
        report_resume(args.repeats)


if __name__ == '__main__':
    main()
