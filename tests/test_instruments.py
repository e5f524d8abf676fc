"""The instruments around the loop: hooks (fit's and train.hooks), the trackers (TensorBoard, W&B offline, MLflow on
a local SQLite store, with the real packages), the profiler window, what a step costs and the throughput records."""
import http.server
import json
import os
import re
import struct
import threading
from pathlib import Path

import pytest

from jaxdl.config import ConfigError, apply_updates
from jaxdl.logging import read_jsonl
from jaxdl.train.hooks import Hook
from jaxdl.train.loop import fit

ROOT = Path(__file__).resolve().parents[1]


class Posts(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        Posts.received.append(json.loads(self.rfile.read(int(self.headers['Content-Length']))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope='module')
def instrumented(tmp_path_factory):
    """One small run with every instrument on: the three trackers, a profile window, the README's hook posting to a
    local webhook, and a hook writing down each moment it sees."""
    from jaxdl.config import apply_updates, load_config_file
    root = tmp_path_factory.mktemp('instrumented')
    server = http.server.HTTPServer(('127.0.0.1', 0), Posts)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    environ = {'WANDB_MODE': 'offline', 'WANDB_SILENT': 'true', 'JAXDL_MOMENT_LOG': str(root / 'moments.json'),
               'JAXDL_NOTIFY_URL': f'http://127.0.0.1:{server.server_port}/hook'}
    saved = {k: os.environ.get(k) for k in environ}
    os.environ.update(environ)
    cwd = os.getcwd()
    os.chdir(root)  # MLflow's default artifact root is ./mlruns
    import sys
    sys.path[:0] = [str(ROOT / 'experiments' / 'custom'), str(ROOT / 'tests' / 'user_code')]
    try:
        config = apply_updates(load_config_file(str(ROOT / 'tests' / 'small_experiment.py')), {
            'train.trackers': ('tensorboard', 'wandb', 'mlflow'), 'train.profile': 'steps 2-4',
            'train.peak_tflops': 0.001, 'train.duration': '20 steps', 'train.validate_every': '3 steps', 'optimizer.learning_rate': 0.2,
            'tracking.mlflow_uri': f'sqlite:///{root}/mlflow.db',
            'train.hooks': ('improvement_notice:ImprovementNotice', 'moment_log:MomentLog')})
        result = fit(config, root / 'run', show_progress=False)
    finally:
        os.chdir(cwd)
        del sys.path[:2]
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        server.shutdown()
    return root, result, list(Posts.received)


def wandb_records(path: Path):
    """The records of a W&B run file (.wandb): a leveldb-style log of protobuf records in 32 KiB blocks, each
    chunk behind a 7-byte header (crc32, length, type: 1 whole, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2
    data, block, position, parts = path.read_bytes(), 32768, 7, b''
    assert data[:4] == b':W&B'
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack('<IHB', data[position:position + 7])
        if kind == 0 and length == 0:
            position += left
            continue
        payload, position = data[position + 7:position + 7 + length], position + 7 + length
        parts = payload if kind in (1, 2) else parts + payload
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def test_hooks_see_every_moment_in_order_and_a_users_hook_posts_each_improvement(instrumented):
    root, result, posts = instrumented
    moments = json.loads((root / 'moments.json').read_text())
    names = [m[0] for m in moments]
    records = read_jsonl(result.workdir / 'metrics.jsonl')
    assert names[:3] == ['run_start', 'train_start', 'before_dispatch'] and names[-2:] == ['after_summary', 'closed']
    assert moments[-1] == ['closed', None]
    assert [m[1] for m in moments if m[0] == 'record'] == [r['split'] for r in records]
    assert names.count('before_dispatch') == names.count('after_dispatch') == result.summary['final_step']
    validated = [m for m in moments if m[0] == 'validated']
    assert [m[1] for m in validated] == [r['step'] for r in records if r['split'] == 'validation']
    improvements = [m[1] for m in validated if m[3]]
    losses = [(r['step'], r['loss']) for r in records if r['split'] == 'validation']
    assert improvements == [s for i, (s, loss) in enumerate(losses) if all(loss < l for _, l in losses[:i])]
    assert improvements[-1] == result.summary['best_step']
    # the README's hook, posting to a (local) webhook at each improvement
    assert [p['text'].split('improved at step ')[1].split(':')[0] for p in posts] == [str(s) for s in improvements]


def test_bad_hook_paths_are_one_line_before_any_step(make_config, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / 'tests' / 'user_code'))
    for path, expected in (('no_such_module:Hook', "does not import: no module named 'no_such_module'"),
                           ('moment_log:NOT_A_HOOK', 'is not a hook (it gives a str)'),
                           ('moment_log:not_a_hook_either', 'is not a hook (it gives a int)'),
                           ('moment_log', 'must be a tuple of import paths')):
        with pytest.raises(ConfigError, match=r'train\.hooks') as error:
            fit(make_config(train__hooks=(path,)), tmp_path / 'run', show_progress=False)
        assert expected in str(error.value) and '\n' not in str(error.value)
    for key, value, expected in (('train__trackers', ('neptune',), "unknown tracker 'neptune'"),
                                 ('train__profile', 'steps 5-3', "must be 'steps A-B' with 1 <= A < B"),
                                 ('train__profile', 'every 5 steps', "must be 'steps A-B'"),
                                 ('train__profile', 'steps 900-901', 'after the run\'s last step (38)')):
        with pytest.raises(ConfigError, match=re.escape(expected)):
            fit(make_config(**{key: value}), tmp_path / 'run', show_progress=False)
    assert not (tmp_path / 'run' / 'checkpoints').exists() or not list((tmp_path / 'run' / 'checkpoints').iterdir())


def test_wandb_offline_holds_the_config_every_record_and_the_files(instrumented):
    _, result, _ = instrumented
    ids = json.loads((result.workdir / 'trackers.json').read_text())
    [run_file] = result.workdir.glob(f'wandb/offline-run-*/run-{ids["wandb"]}.wandb')
    history, summary, files, config = {}, {}, set(), {}
    for record in wandb_records(run_file):
        kind = record.WhichOneof('record_type')
        if kind == 'history':
            history[record.history.step.num] = {
                i.key or '/'.join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
        elif kind == 'summary':
            summary.update({i.key or '/'.join(i.nested_key): json.loads(i.value_json) for i in record.summary.update})
        elif kind == 'files':
            files |= {f.path for f in record.files.files}
        elif kind == 'run':
            assert record.run.run_id == ids['wandb'] and record.run.project == 'jaxdl'
            config = {i.key or '/'.join(i.nested_key): json.loads(i.value_json) for i in record.run.config.update}
    assert config['train.batch_size'] == 64 and config['model.options.features'] == '[8, 16]'
    records = read_jsonl(result.workdir / 'metrics.jsonl')
    for row in records:
        if row['split'] == 'test':
            assert summary['test/accuracy'] == pytest.approx(row['accuracy'])
        else:
            assert history[row['step']][f"{row['split']}/loss"] == pytest.approx(row['loss'])
    assert {'summary.json', 'progress.png'} <= files


def test_mlflow_holds_the_config_every_record_and_the_artifacts(instrumented):
    from mlflow.tracking import MlflowClient
    root, result, _ = instrumented
    client = MlflowClient(tracking_uri=f'sqlite:///{root}/mlflow.db')
    run = client.get_run(json.loads((result.workdir / 'trackers.json').read_text())['mlflow'])
    assert run.info.status == 'FINISHED' and run.info.run_name == 'run'
    assert run.data.params['train.batch_size'] == '64' and run.data.params['train.profile'] == 'steps 2-4'
    records = read_jsonl(result.workdir / 'metrics.jsonl')
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, 'train/loss')}
    assert history == pytest.approx({r['step']: r['loss'] for r in records if r['split'] == 'train'})
    test = next(r for r in records if r['split'] == 'test')
    assert run.data.metrics['test/accuracy'] == pytest.approx(test['accuracy'])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {'summary.json', 'progress.png'}


def test_the_profile_window_is_a_trace_of_the_annotated_train_steps(instrumented):
    _, result, _ = instrumented
    [trace] = (result.workdir / 'tensorboard' / 'plugins' / 'profile').glob('*/*.xplane.pb')
    data = trace.read_bytes()
    assert b'train' in data and b'step_num' in data  # the StepTraceAnnotation of each step


def test_what_a_step_costs_is_in_environment_json_and_the_records_carry_throughput(instrumented):
    import jax
    _, result, _ = instrumented
    costs = json.loads((result.workdir / 'environment.json').read_text())['costs']
    params = result.state.params
    assert [r['name'] for r in costs['parameters']] == list(params)
    for row in costs['parameters']:
        leaves = jax.tree.leaves(params[row['name']])
        assert row['count'] == sum(x.size for x in leaves) and row['bytes'] == row['bytes_per_device'] == 4 * row['count']
    # the CNN's convolutions and dense layers: forward 2 * multiply-adds, backward about twice that
    conv = lambda hw, k, cin, cout: 2 * hw * k * k * cin * cout
    forward = 64 * (conv(64, 3, 1, 8) + conv(64, 3, 8, 8) + conv(16, 3, 8, 16) + conv(16, 3, 16, 16)
                    + 2 * 64 * 32 + 2 * 32 * 10)
    flops = costs['train_step']['flops_per_device']
    assert 2 * forward < flops < 5 * forward, (flops, forward)
    assert costs['train_step']['memory_bytes']['argument'] >= costs['state_bytes_per_device']
    train = [r for r in read_jsonl(result.workdir / 'metrics.jsonl') if r['split'] == 'train']
    for row in train:
        assert row['images_per_s'] == pytest.approx(64 / row['step_time_s'])
        assert 0 <= row['input_wait_share'] <= 1
        assert row['mfu'] == pytest.approx(flops / row['step_time_s'] / 1e9)  # peak_tflops 0.001 = 1e9 FLOP/s


def test_a_failing_tracker_is_named_once_and_dropped_and_the_run_completes(make_config, tmp_path, capsys):
    result = fit(make_config(train__trackers=('mlflow', 'tensorboard'), train__duration='10 steps',
                             tracking__mlflow_uri='nosuchscheme://nowhere'), tmp_path / 'run', show_progress=False)
    err = capsys.readouterr().err
    assert err.count("warning: tracker 'mlflow' failed") == 1, err
    assert result.summary['stop_reason'] == 'completed' and (tmp_path / 'run' / 'summary.json').exists()
    assert list((tmp_path / 'run' / 'tensorboard').glob('events.out.tfevents.*'))


class CrashAfter(Hook):
    """Stops a run with an error after step `step` (a crash the next fit resumes from)."""

    def __init__(self, step: int):
        self.step = step

    def end_of_step(self, run, step):
        if step == self.step:
            raise RuntimeError(f'crashed after step {step}')


def test_a_resumed_run_continues_its_tracker_runs_and_does_not_trace_its_window_again(make_config, tmp_path,
                                                                                     monkeypatch):
    from mlflow.tracking import MlflowClient
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('WANDB_MODE', 'offline')
    monkeypatch.setenv('WANDB_SILENT', 'true')
    uri = f'sqlite:///{tmp_path}/mlflow.db'
    config = make_config(train__trackers=('wandb', 'mlflow'), train__profile='steps 2-4', train__duration='20 steps',
                         train__checkpoint_every='5 steps', tracking__mlflow_uri=uri)
    workdir = tmp_path / 'run'
    with pytest.raises(RuntimeError, match='crashed after step 7'):
        fit(config, workdir, show_progress=False, hooks=[CrashAfter(7)])
    ids = json.loads((workdir / 'trackers.json').read_text())
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(ids['mlflow']).info.status == 'FAILED'
    # resumed with another instrument setting (allowed): MLflow keeps the parameters its run started with
    result = fit(apply_updates(config, {'train.peak_tflops': 2.0}), workdir, show_progress=False)
    assert json.loads((workdir / 'trackers.json').read_text()) == ids
    assert len(client.search_runs([client.get_experiment_by_name('jaxdl').experiment_id])) == 1
    assert client.get_run(ids['mlflow']).info.status == 'FINISHED'
    history = sorted(m.step for m in client.get_metric_history(ids['mlflow'], 'train/loss'))
    assert history == [r['step'] for r in read_jsonl(workdir / 'metrics.jsonl') if r['split'] == 'train']
    runs = sorted(workdir.glob('wandb/offline-run-*/run-*.wandb'))
    assert len(runs) == 2 and all(p.name == f'run-{ids["wandb"]}.wandb' for p in runs)
    assert len(list((workdir / 'tensorboard' / 'plugins' / 'profile').iterdir())) == 1  # the first run's trace only
    assert result.summary['final_step'] == 20


def test_the_peak_rate_is_the_devices_and_the_compute_dtypes():
    from jaxdl.train.costs import peak_tflops
    assert peak_tflops('NVIDIA H100 80GB HBM3', 'bfloat16') == 989.0
    assert peak_tflops('NVIDIA H100 80GB HBM3', 'float32') == 494.7  # TF32, jax's default float32 matmul there
    assert peak_tflops('NVIDIA H100 PCIe', 'bfloat16') == 756.0
    assert peak_tflops('TPU v5 lite', 'bfloat16') == 197.0 and peak_tflops('TPU v5', 'bfloat16') == 459.0
    assert peak_tflops('cpu', 'float32') is None and peak_tflops('TPU v4', 'float32') is None
