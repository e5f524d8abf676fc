"""The streaming path (dataset.source='stream'): examples read by index from ArrayRecord files, each process only its
own rows, resume without replay, memory that does not grow with the dataset, and its bad-input errors."""
import json
import math
import os
import shutil
import sys

import numpy as np
import pytest

from conftest import ROOT, free_port, run, run_job
from jaxdl.data.pipeline import Pipeline
from jaxdl.errors import ConfigError, DataError

TESTS = str(ROOT / 'tests')


@pytest.fixture
def stream_config(make_config):
    """The small test config on a `jpeg_shapes` variant of tests/streaming_builders.py, streamed."""
    def make(builder='TinyJpegShapes', **overrides):
        return make_config(**{'dataset__name': f'streaming_builders:{builder}', 'dataset__source': 'stream',
                              'dataset__image_size': 16, 'dataset__mean': (0.5,), 'dataset__std': (0.25,),
                              'train__batch_size': 8, 'train__eval_batch_size': 16, **overrides})
    return make


def counting_reads(pipeline: Pipeline, split: str) -> list:
    """Every example index the pipeline's reader of `split` fetches from now on."""
    records = pipeline.source.records(split)
    read, seen = records.read, []

    def counted(indices):
        seen.extend(int(i) for i in indices)
        return read(indices)
    records.read = counted
    return seen


def test_global_batches_do_not_depend_on_the_process_count_and_each_process_reads_only_its_rows(stream_config):
    config, global_batch, steps = stream_config(), 8, 3
    sampler = Pipeline.for_config(config).source.sampler(seed=3, global_batch=global_batch)
    epoch = [sampler.global_batch_indices(s) for s in range(sampler.steps_per_epoch)]
    by_count = {}
    for count in (1, 2, 4):
        rows = global_batch // count
        per_process = []
        for i in range(count):
            pipeline = Pipeline.for_config(config, process_index=i, process_count=count)
            reads = counting_reads(pipeline, 'train')
            batches = pipeline.train_batches(seed=3, global_batch=global_batch)
            per_process.append([next(batches) for _ in range(steps)])
            own = {index for batch in epoch for index in batch[i * rows:(i + 1) * rows]}
            assert reads and set(reads) <= own, f'process {i} of {count} read examples of other processes'
            assert len(reads) < len(epoch) * rows  # and not the whole epoch ahead
        by_count[count] = [{k: np.concatenate([p[s][k] for p in per_process]) for k in per_process[0][s]}
                           for s in range(steps)]
    for count in (2, 4):
        for one, many in zip(by_count[1], by_count[count]):
            assert one.keys() == many.keys()
            for key in one:
                np.testing.assert_array_equal(one[key], many[key])


def test_a_resume_mid_epoch_reads_nothing_before_its_position_and_continues_identically(stream_config):
    config, global_batch, start = stream_config(dataset__augment__flip_left_right=True,
                                                dataset__augment__randaugment_layers=2), 8, 125
    uninterrupted = Pipeline.for_config(config).train_batches(seed=5, global_batch=global_batch)
    for _ in range(start):
        next(uninterrupted)
    expected = [next(uninterrupted) for _ in range(2)]
    pipeline = Pipeline.for_config(config)
    reads = counting_reads(pipeline, 'train')
    resumed = pipeline.train_batches(seed=5, global_batch=global_batch, start_step=start)
    got = [next(resumed) for _ in range(2)]
    for a, b in zip(expected, got):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    flips = Pipeline.for_config(stream_config(dataset__augment__flip_left_right=True)).train_batches(
        seed=5, global_batch=global_batch, start_step=start)
    assert not np.array_equal(next(flips)['image'], expected[0]['image'])  # RandAugment on top of the flips
    sampler = pipeline.source.sampler(seed=5, global_batch=global_batch)
    before = {i for s in range(start) for i in sampler.global_batch_indices(s)}
    assert set(sampler.global_batch_indices(start)) <= set(reads)
    assert not set(reads) & before, 'the resumed stream read examples of positions before its step'


MEASURE_PEAKS = '''
import json, sys
sys.path.insert(0, {tests!r})
from jaxdl.config import default_config
from jaxdl.data.pipeline import Pipeline


def peak_mb():  # VmHWM: this process's own peak RSS (ru_maxrss would also hold the forking worker's size)
    return next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM')) // 1024


peaks = []
for builder, source in (('MemoryJpegShapes', 'stream'), ('MemoryJpegShapesX10', 'stream'),
                        ('MemoryJpegShapesX10', 'memory')):
    c = default_config()
    c.dataset.name, c.dataset.source, c.dataset.image_size = 'streaming_builders:' + builder, source, 64
    pipeline = Pipeline.for_config(c)
    open('/proc/self/clear_refs', 'w').write('5')  # the peak from here on (RSS already held stays counted)
    batches = pipeline.train_batches(seed=0, global_batch=32)
    for _ in range(pipeline.steps_per_epoch(32) + 2):
        next(batches)
    for _ in pipeline.eval_batches('test', 32):
        pass
    peaks.append(peak_mb())
    del batches, pipeline
print(json.dumps(peaks))
'''


@pytest.mark.slow  # the plateau over many streamed epochs stays in the quick suite
def test_peak_memory_of_the_streaming_path_does_not_grow_with_the_dataset():
    # An epoch over 300 and over 3000 64x64 JPEG images, streamed, then the 3000 cached in memory (the decoded
    # 10x split is 141 MB; measured beside, so the measurement can see growth), each peak reset before it starts
    # (one process: three would start TensorFlow three times).
    result = run([sys.executable, '-c', MEASURE_PEAKS.format(tests=TESTS)], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    stream_1x, stream_10x, memory_10x = json.loads(result.stdout.strip().splitlines()[-1])
    assert memory_10x - stream_10x > 100, (memory_10x, stream_10x)
    assert stream_10x - stream_1x < 30, f'streaming peak grew from {stream_1x} MB to {stream_10x} MB at 10x data'


MEASURE_EPOCHS = '''
import json, sys
sys.path.insert(0, {tests!r})
from tensorflow.python.ops import script_ops
from jaxdl.config import default_config
from jaxdl.data import pipeline as pipeline_module
from jaxdl.data.pipeline import Pipeline
trims, trim = [], pipeline_module._MALLOC_TRIM
pipeline_module._MALLOC_TRIM = lambda pad: trims.append(trim(pad))
c = default_config()
c.dataset.name, c.dataset.source, c.dataset.image_size = 'streaming_builders:MemoryJpegShapes', 'stream', 32
pipeline = Pipeline.for_config(c)
batches = pipeline.train_batches(seed=0, global_batch=32)
anonymous, readers = {{}}, {{}}
for epoch in range(1, 41):  # as fit() runs them: an epoch of steps, then a validation
    for _ in range(pipeline.steps_per_epoch(32)):
        next(batches)
    for _ in pipeline.eval_batches('validation', 8):
        pass
    if epoch in (10, 40):
        anonymous[epoch] = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('RssAnon')) // 1024
        readers[epoch] = script_ops._py_funcs.size()  # numpy_function readers TensorFlow holds for the process
del batches, pipeline  # its threads stopped before the interpreter exits (they call into Python to read)
print(json.dumps([anonymous, readers, len(trims)]))
'''


def test_memory_plateaus_over_many_streamed_epochs_and_validations():
    """Forty epochs, each validated: what one validation builds is built once, what its threads freed goes back
    to the system after it (glibc's arenas keep it otherwise), and memory stops growing. (fit() itself over 64
    epochs: benchmarks/streamed_epochs_memory.py, minutes.)"""
    result = run([sys.executable, '-c', MEASURE_EPOCHS.format(tests=TESTS)], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    anonymous, readers, trims = json.loads(result.stdout.strip().splitlines()[-1])
    assert readers['40'] == readers['10'], f'every validation left a reader behind: {readers}'
    assert trims == 40, f'{trims} of 40 validations handed freed memory back'
    assert anonymous['40'] - anonymous['10'] < 20, f'anonymous memory grew over 30 epochs: {anonymous} MB'


@pytest.fixture(scope='module')
def streamed_run(tmp_path_factory):
    """A short streamed run with the ImageNet-style transforms, on a private copy of the dataset's files."""
    from jaxdl.config import apply_updates, load_config_file
    from jaxdl.train.loop import fit
    data_dir = tmp_path_factory.mktemp('data')
    config = apply_updates(load_config_file(str(ROOT / 'tests' / 'small_experiment.py')), {
        'dataset.name': 'streaming_builders:CorruptJpegShapes', 'dataset.data_dir': str(data_dir),
        'dataset.image_size': 24, 'dataset.mean': (0.5,), 'dataset.std': (0.25,), 'dataset.center_crop': 0.875,
        'dataset.augment.random_resized_crop': True, 'dataset.augment.flip_left_right': True,
        'dataset.skip_corrupt_images': True, 'train.batch_size': 8, 'train.eval_batch_size': 16,
        'train.duration': '2 epochs'})
    return config, fit(config, tmp_path_factory.mktemp('runs') / 'streamed', show_progress=False)


def corrupt_index(pipeline: Pipeline) -> int:
    import tensorflow as tf
    reader = pipeline.source.reader('train', train=False)
    records = pipeline.source.records('train')
    bad = []
    for index, record in enumerate(records.read(np.arange(len(records)))):
        try:
            reader(tf.constant(record), tf.constant(index, tf.int64), tf.zeros([2], tf.int64))
        except tf.errors.InvalidArgumentError:
            bad.append(index)
    assert len(bad) == 1
    return bad[0]


def test_a_corrupt_image_is_skipped_only_when_the_config_says_so_and_counted(streamed_run, tmp_path):
    from jaxdl.train.loop import fit
    config, result = streamed_run
    environment = json.loads((result.workdir / 'environment.json').read_text())
    assert environment['dataset']['source'] == 'stream' and len(environment['dataset']['fingerprints']) == 3
    pipeline = Pipeline.for_config(config)
    bad = corrupt_index(pipeline)
    sampler = pipeline.source.sampler(seed=config.seed, global_batch=8)
    drawn = sum(sampler.global_batch_indices(s).count(bad) for s in range(result.summary['final_step']))
    assert drawn >= 1 and result.summary['skipped_corrupt_images'] == drawn
    assert result.summary['test']['count'] == 16  # the corrupt example is in the training split only
    # Without the setting: an error naming the example and its file, before the first step completes.
    strict = config.copy_and_resolve_references()
    strict.dataset.skip_corrupt_images = False
    with pytest.raises(DataError, match=rf'example {bad} \(its index in the split; record \d+ of .*array_record'):
        fit(strict, tmp_path / 'strict', show_progress=False)


def test_a_truncated_record_file_and_changed_files_are_refused_naming_them(streamed_run, tmp_path):
    from jaxdl.train.loop import fit
    from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter
    config, result = streamed_run
    source = Pipeline.for_config(config).source.records('train')
    (path,) = [i.filename for i in source._instructions]
    # Prepared again with other content under the same names: the resumed run's indices would name other
    # examples, so it stops before reading any.
    reader = ArrayRecordReader(os.fspath(path))
    records = reader.read_all()
    reader.close()
    shutil.copy(path, tmp_path / 'original')
    writer = ArrayRecordWriter(os.fspath(path), 'group_size:1')
    for record in reversed(records):
        writer.write(record)
    writer.close()
    try:
        with pytest.raises(DataError, match='changed since the run .* started'):
            fit(config, result.workdir, show_progress=False)
        # Cut short: named at once, when the pipeline opens it.
        with open(path, 'wb') as f:
            f.write((tmp_path / 'original').read_bytes()[:1000])
        with pytest.raises(DataError, match=rf'{os.path.basename(path)} is damaged or truncated'):
            Pipeline.for_config(config).source.records('train')
    finally:
        shutil.copy(tmp_path / 'original', path)
    assert json.loads((result.workdir / 'summary.json').read_text()) == result.summary  # nothing saved was lost


def test_settings_of_one_input_path_are_refused_on_the_other(stream_config):
    with pytest.raises(ConfigError, match="dataset.augment.random_resized_crop.*streaming path"):
        Pipeline.for_config(stream_config(dataset__source='memory', dataset__augment__random_resized_crop=True))
    with pytest.raises(ConfigError, match="dataset.train_examples_per_class.*dataset.source='memory'"):
        Pipeline.for_config(stream_config(dataset__train_examples_per_class=2))
    for key, value in (('shuffle_buffer', 100), ('cache', False)):  # and the other way round
        with pytest.raises(ConfigError, match=f"'dataset.{key}': applies to the in-memory path only, and this run "
                                              f"streams"):
            Pipeline.for_config(stream_config(**{f'dataset__{key}': value}))
    with pytest.raises(ConfigError, match='jaxdl prepare digits --data-dir .* --array-record'):
        Pipeline.for_config(stream_config(dataset__name='digits', dataset__image_size=8, dataset__source='auto',
                                          dataset__augment__random_resized_crop=True))


def test_both_ways_out_that_a_dataset_too_large_for_memory_is_told_work_as_written(stream_config):
    """A built-in stored as TFRecord, too large for memory at its image size: the error's command, run as printed,
    prepares it as ArrayRecord where the config it names streams it; its other advice trains in memory."""
    import re
    import shlex
    config = stream_config(dataset__name='digits', dataset__image_size=64, dataset__source='auto',
                           dataset__memory_limit_mb=1)
    with pytest.raises(ConfigError) as error:
        Pipeline.for_config(config)
    message = str(error.value)
    command = shlex.split(re.search(r'`(jaxdl prepare [^`]+)`', message).group(1))
    prepared = run([sys.executable, '-m', 'jaxdl', *command[1:]], timeout=300)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    data_dir = re.search(r'set dataset\.data_dir=(\S+?),? or', message).group(1)
    streamed = Pipeline.for_config(stream_config(dataset__name='digits', dataset__image_size=64, dataset__source='auto',
                                                 dataset__memory_limit_mb=1, dataset__data_dir=data_dir))
    assert streamed.source.name == 'stream' and next(streamed.train_batches(seed=0, global_batch=8))['image'].shape == (8, 64, 64, 1)
    assert "set dataset.source='memory' with dataset.cache=False and a dataset.shuffle_buffer (e.g. 10000)" in message
    in_memory = Pipeline.for_config(stream_config(dataset__name='digits', dataset__image_size=64, dataset__source='memory',
                                                  dataset__memory_limit_mb=1, dataset__cache=False,
                                                  dataset__shuffle_buffer=10000))
    assert in_memory.source.name == 'memory' and next(in_memory.train_batches(seed=0, global_batch=8))['image'].shape == (8, 64, 64, 1)


def test_both_sources_give_each_process_the_same_share_of_an_evaluation_split(stream_config):
    """The in-memory and the stream source behind one interface: for 1 and 3 processes (50 examples: uneven
    shares) each process's valid evaluation rows are the same examples, decoded alike, whichever source reads them;
    and the training batches are a source's own order, but the same shapes and keys."""
    def shares(source, count):
        rows = []
        for i in range(count):
            pipeline = Pipeline.for_config(stream_config(dataset__source=source), process_index=i, process_count=count)
            assert pipeline.source.name == source
            batches = list(pipeline.eval_batches('validation', 12))
            assert len(batches) == pipeline.num_eval_batches('validation', 12) == math.ceil(math.ceil(50 / count) / (12 // count))
            valid = np.concatenate([b['valid'] for b in batches])
            rows.append({k: np.concatenate([b[k] for b in batches])[valid] for k in ('image', 'label')})
        return rows
    for count in (1, 3):
        memory, stream = shares('memory', count), shares('stream', count)
        assert sum(len(p['label']) for p in memory) == 50
        for m, s in zip(memory, stream):
            np.testing.assert_array_equal(m['label'], s['label'])
            np.testing.assert_allclose(m['image'], s['image'], atol=1e-6)
    trained = {source: next(Pipeline.for_config(stream_config(dataset__source=source)).train_batches(seed=0, global_batch=8))
               for source in ('memory', 'stream')}
    assert {k: v.shape for k, v in trained['memory'].items()} == {k: v.shape for k, v in trained['stream'].items()}


def test_auto_streams_a_split_larger_than_the_memory_limit(stream_config):
    # 2000 16x16x3 images are 1.5 MB decoded as uint8 (5.9 MB as float32, before the batches carried pixels).
    assert Pipeline.for_config(stream_config(dataset__source='auto', dataset__memory_limit_mb=1)).source.name == 'stream'
    assert Pipeline.for_config(stream_config(dataset__source='auto', dataset__memory_limit_mb=2)).source.name == 'memory'


def test_two_jax_processes_each_read_only_their_rows_of_the_same_global_batches(stream_config):
    """The same property as above with two real processes joined by jax.distributed (127.0.0.1)."""
    port, steps = free_port(), 3
    worker = [sys.executable, str(ROOT / 'tests' / 'streaming_process.py'), f'127.0.0.1:{port}', '2']
    outputs = run_job([[*worker, str(i), str(steps)] for i in range(2)])
    for code, _, err in outputs:
        assert code == 0, err[-3000:]
    results = sorted((json.loads(out.strip().splitlines()[-1]) for _, out, _ in outputs), key=lambda r: r['process'])
    pipeline = Pipeline.for_config(stream_config())
    sampler = pipeline.source.sampler(seed=3, global_batch=8)
    epoch = [sampler.global_batch_indices(s) for s in range(sampler.steps_per_epoch)]
    single = pipeline.train_batches(seed=3, global_batch=8)
    for step in range(steps):
        batch = next(single)
        assert sum((r['labels'][step] for r in results), []) == batch['label'].tolist()
        np.testing.assert_allclose(sum((r['image_sums'][step] for r in results), []),
                                   batch['image'].sum(axis=(1, 2, 3)), atol=1e-2)
    for r in results:
        own = {index for batch in epoch for index in batch[r['process'] * 4:(r['process'] + 1) * 4]}
        assert r['read'] and set(r['read']) <= own, f'process {r["process"]} read examples of the other'
