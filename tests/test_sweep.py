"""`jaxdl sweep` and `jaxdl compare`: a grid of configs and seeds as run directories, resumed where a sweep was
interrupted; runs grouped by configuration with mean, spread and range over seeds, from the run files alone."""
import json
import os
import signal

import pytest

from jaxdl.compare import compare, curves_against, markdown, plot_against, plot_curves
from jaxdl.config import ConfigError
from jaxdl.errors import CheckpointError
from jaxdl.sweep import parse_grid, plan_runs, sweep
from conftest import ROOT

EXPERIMENT = str(ROOT / 'tests' / 'small_experiment.py')


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_and_a_finished_one_is_skipped(tmp_path, monkeypatch):
    grid = parse_grid(['train.duration=12 steps', 'train.checkpoint_every=5 steps', 'train.validate_every=6 steps'])
    lines = []
    monkeypatch.setenv('JAXDL_KILL_AT', 'saved@5')  # every run dies once its step-5 checkpoint is written
    first = sweep(EXPERIMENT, grid, 2, tmp_path / 'sweep', parallel=2, echo=lines.append)
    assert [r['status'] for r in first] == ['interrupted', 'interrupted']
    assert all(r['exit_code'] == -signal.SIGKILL for r in first)
    cores = len(os.sched_getaffinity(0))
    for run in (tmp_path / 'sweep').glob('*seed=*'):  # two at once: each process pinned to half of the cores
        recorded = json.loads((run / 'environment.json').read_text())['cpu_cores']
        assert recorded == (cores // 2 if cores >= 2 else cores)
    monkeypatch.delenv('JAXDL_KILL_AT')
    second = sweep(EXPERIMENT, grid, 2, tmp_path / 'sweep', echo=lines.append)
    assert [r['status'] for r in second] == ['finished', 'finished']
    assert sum('resuming' in line for line in lines) == 2
    third = sweep(EXPERIMENT, grid, 2, tmp_path / 'sweep', echo=lines.append)
    assert all(r.get('skipped') for r in third) and 'finished before, skipped' in lines[-1]
    names = [r['run'] for r in third]
    assert names == [f'train.duration=12steps,train.checkpoint_every=5steps,train.validate_every=6steps,seed={s}'
                     for s in (0, 1)]
    for seed, name in enumerate(names):
        run = tmp_path / 'sweep' / name
        config = json.loads((run / 'config.json').read_text())
        assert config['seed'] == seed and config['train']['duration'] == '12 steps'
        assert json.loads((run / 'summary.json').read_text())['final_step'] == 12
    # One TensorBoard over the sweep directory shows every run, named by its overrides.
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path / 'sweep'))
    assert sorted(multiplexer.Runs()) == sorted(f'{n}/tensorboard' for n in names)
    result = compare([tmp_path / 'sweep'])
    assert result['keys'] == [] and result['groups'][0]['seeds'] == [0, 1]


def test_grid_keys_and_values_are_checked_before_any_run(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'optimizer.nmae'.*'optimizer.name'"):
        plan_runs(EXPERIMENT, parse_grid(['optimizer.nmae=sgd,adam']), 1)
    with pytest.raises(ConfigError, match=r"config key 'train.batch_size': 'big' does not fit"):
        plan_runs(EXPERIMENT, parse_grid(['train.batch_size=64,big']), 1)
    with pytest.raises(ConfigError, match=r"config key 'optimizer.name': unknown value 'adma'"):
        plan_runs(EXPERIMENT, parse_grid(['optimizer.name=sgd,adma']), 1)
    with pytest.raises(ConfigError, match='--seeds N'):
        plan_runs(EXPERIMENT, parse_grid(['seed=1,2']), 1)
    assert parse_grid(['model.options.features=(8,16),(16,32)']) == {'model.options.features': [(8, 16), (16, 32)]}
    assert not (tmp_path / 'sweep').exists()


def fake_run(directory, optimizer, seed, accuracy, finished=True, task='classification', dataset=None, ema=None):
    """A run directory as any jaxdl version writes it: compare reads only these three files."""
    directory.mkdir(parents=True)
    (directory / 'config.json').write_text(json.dumps(
        {'seed': seed, 'task': {'name': task}, 'optimizer': {'name': optimizer, 'learning_rate': None},
         'train': {'parallel': 'jit' if seed else 'sharded'}, 'dataset': dataset or {}}))
    records = [{'step': s, 'split': 'validation', 'loss': 2.0 / s, 'accuracy': accuracy * s / 20} for s in (10, 20)]
    (directory / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
    if finished:
        (directory / 'summary.json').write_text(json.dumps(
            {'test': {'loss': 1 - accuracy, 'accuracy': accuracy, 'count': 100},
             'validation': {'step': 20, 'loss': 0.1, 'accuracy': accuracy},
             **({'test_ema': {'loss': 1 - ema, 'accuracy': ema, 'count': 100}} if ema is not None else {})}))


def test_compare_groups_by_configuration_with_spread_and_missing_seeds(tmp_path):
    fake_run(tmp_path / 'sgd' / '0', 'sgd', 0, 0.90, ema=0.91)
    fake_run(tmp_path / 'sgd' / '1', 'sgd', 1, 0.94, ema=0.95)
    fake_run(tmp_path / 'sgd' / '2', 'sgd', 2, 0.92)
    fake_run(tmp_path / 'adam' / '0', 'adam', 0, 0.97)
    fake_run(tmp_path / 'adam' / '1', 'adam', 1, 0.95, finished=False)  # still running: left out, and said so
    result = compare([tmp_path])
    assert result['keys'] == ['optimizer.name']  # the seed and the parallel mode differ too, but are no config
    groups = {g['config']['optimizer.name']: g for g in result['groups']}
    sgd = groups['sgd']['figures']['test.accuracy']
    assert sgd['mean'] == pytest.approx(0.92) and sgd['std'] == pytest.approx(0.02) and sgd['n'] == 3
    assert (sgd['min'], sgd['max']) == (0.90, 0.94)
    # the EMA's test figures where runs kept one: over the seeds that have them
    assert groups['sgd']['figures']['test_ema.accuracy']['mean'] == pytest.approx(0.93)
    assert groups['sgd']['figures']['test_ema.accuracy']['n'] == 2 and 'test_ema.accuracy' not in groups['adam']['figures']
    assert groups['adam']['seeds'] == [0] and groups['adam']['figures']['test.accuracy']['std'] == 0.0
    assert result['unfinished'] == [str(tmp_path / 'adam' / '1')]
    table = markdown(result)
    assert '| optimizer.name | seeds | test.loss | test.accuracy | validation.loss | validation.accuracy |' in table
    assert '| sgd | 3 (0, 1, 2) | 0.0800 ± 0.0200 (0.0600..0.1000) | 0.9200 ± 0.0200 (0.9000..0.9400) |' in table
    assert 'unfinished (left out)' in table
    assert plot_curves(result, tmp_path / 'curves.png').stat().st_size > 10_000
    fake_run(tmp_path / 'detection' / '0', 'sgd', 0, 0.5, task='detection')
    with pytest.raises(ConfigError, match='different tasks'):
        compare([tmp_path])
    (tmp_path / 'empty').mkdir()
    with pytest.raises(CheckpointError, match='is not a jaxdl run directory and holds none'):
        compare([tmp_path / 'empty'])


def test_a_figure_against_a_config_key_is_a_data_efficiency_curve(tmp_path):
    for n, sgd, adam in ((1, 0.3, 0.5), (10, 0.6, 0.8), (50, 0.7, 0.9)):
        for seed in (0, 1):
            spread = 0.02 * (seed - 0.5)
            fake_run(tmp_path / f'sgd{n}_{seed}', 'sgd', seed, sgd + spread, dataset={'per_class': n})
            fake_run(tmp_path / f'adam{n}_{seed}', 'adam', seed, adam + spread, dataset={'per_class': n})
    result = compare([tmp_path])
    curves = curves_against(result, 'dataset.per_class')
    assert list(curves) == ['name=adam', 'name=sgd']
    assert [x for x, _ in curves['name=sgd']] == [1, 10, 50]
    assert [sum(v) / len(v) for _, v in curves['name=sgd']] == pytest.approx([0.3, 0.6, 0.7])
    assert sorted(curves['name=adam'][1][1]) == pytest.approx([0.79, 0.81])
    assert plot_against(result, 'dataset.per_class', tmp_path / 'curve.png').stat().st_size > 10_000
    with pytest.raises(ConfigError, match='not a config key these runs differ in'):
        curves_against(result, 'optimizer.learning_rate')
    # A key that differs only for some points (here one run's learning rate) splits a line, unless ignored.
    config = json.loads((tmp_path / 'sgd1_0' / 'config.json').read_text())
    config['optimizer']['learning_rate'] = 0.5
    (tmp_path / 'sgd1_0' / 'config.json').write_text(json.dumps(config))
    assert len(curves_against(compare([tmp_path]), 'dataset.per_class')) == 3
    joined = curves_against(compare([tmp_path], ignore=['optimizer.learning_rate']), 'dataset.per_class')
    assert [len(v) for _, v in joined['name=sgd']] == [2, 2, 2]
    with pytest.raises(ConfigError, match='no finished run reports it'):
        curves_against(result, 'dataset.per_class', 'test.map')


def test_the_commands_print_a_table_json_and_one_line_errors(tmp_path):
    from conftest import jaxdl
    fake_run(tmp_path / 'runs' / 'sgd0', 'sgd', 0, 0.90)
    fake_run(tmp_path / 'runs' / 'adam0', 'adam', 0, 0.96)
    result = jaxdl('compare', tmp_path / 'runs', '--metrics', 'test.accuracy')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == '| optimizer.name | seeds | test.accuracy |'
    assert (tmp_path / 'runs' / 'compare.png').is_file()
    result = jaxdl('compare', tmp_path / 'runs', '--json', '--no-figure')
    groups = json.loads(result.stdout)['groups']
    assert {g['config']['optimizer.name']: g['figures']['test.accuracy']['mean'] for g in groups} == \
        {'sgd': 0.90, 'adam': 0.96}
    result = jaxdl('compare', tmp_path / 'runs' / 'sgd0' / 'nothing')
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and 'does not exist' in result.stderr
    result = jaxdl('sweep', EXPERIMENT, '--workdir', tmp_path / 'sweep', '--grid', 'optimizer.nmae=sgd,adam')
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "unknown config key 'optimizer.nmae'" in result.stderr and not (tmp_path / 'sweep').exists()


def test_rerun_names_what_besides_the_config_changes_floats():
    from jaxdl.cli import placement_differences
    recorded = {'backend': 'cpu', 'devices': ['TFRT_CPU_0'], 'cpu_cores': 1, 'xla_flags': ''}
    assert placement_differences(recorded, {**recorded}) == []
    assert placement_differences(recorded, {**recorded, 'cpu_cores': 2}) == ['usable CPU cores: 1 then, 2 now']
    assert placement_differences({'backend': 'cpu'}, {'backend': 'cpu', 'cpu_cores': 2}) == []  # not recorded then


def test_an_ablation_runs_the_experiment_and_each_component_removed_in_turn():
    from jaxdl.sweep import parse_ablations
    ablations = parse_ablations(['optimizer.ema_decay=0', 'model.options.features=(4,8),model.options.dense=8'])
    assert ablations == [(('optimizer.ema_decay', 0),),
                         (('model.options.features', (4, 8)), ('model.options.dense', 8))]
    names = [r.name for r in plan_runs(EXPERIMENT, {}, 2, ablations)]
    assert names == ['seed=0', 'seed=1', 'optimizer.ema_decay=0,seed=0', 'optimizer.ema_decay=0,seed=1',
                     'model.options.features=(4,8),model.options.dense=8,seed=0',
                     'model.options.features=(4,8),model.options.dense=8,seed=1']
    with_grid = [r.name for r in plan_runs(EXPERIMENT, parse_grid(['optimizer.name=sgd,adam']), 1, ablations[:1])]
    assert with_grid == ['optimizer.name=sgd,seed=0', 'optimizer.name=sgd,optimizer.ema_decay=0,seed=0',
                         'optimizer.name=adam,seed=0', 'optimizer.name=adam,optimizer.ema_decay=0,seed=0']
    with pytest.raises(ConfigError, match=r"unknown config key 'optimizer.ema_dacay'"):
        plan_runs(EXPERIMENT, {}, 1, parse_ablations(['optimizer.ema_dacay=0']))
    with pytest.raises(ConfigError, match='--ablate .*write KEY=VALUE'):
        parse_ablations(['optimizer.ema_decay'])
    with pytest.raises(ConfigError, match='both swept by --grid and set by --ablate'):
        plan_runs(EXPERIMENT, parse_grid(['optimizer.ema_decay=0,0.9']), 1, ablations[:1])


def test_a_legend_names_what_sets_each_group_apart():
    from jaxdl.compare import group_labels
    ablation = {'keys': ['a.mixup', 'b.ema'], 'groups': [{'config': {'a.mixup': 0.8, 'b.ema': 0.99}},
                                                         {'config': {'a.mixup': 0.0, 'b.ema': 0.99}},
                                                         {'config': {'a.mixup': 0.8, 'b.ema': 0.0}}]}
    assert group_labels(ablation) == ['the shared setting', 'a.mixup=0.0', 'b.ema=0.0']
    grid = {'keys': ['optimizer.name'], 'groups': [{'config': {'optimizer.name': n}} for n in ('sgd', 'adam')]}
    assert group_labels(grid) == ['optimizer.name=sgd', 'optimizer.name=adam']


def test_label_names_the_runs_under_a_folder_and_keeps_what_sets_namesakes_apart(tmp_path):
    from jaxdl.compare import group_labels, parse_labels
    for n in (1, 10):  # a data-efficiency sweep per variant, each its own folder, as transfer_shapes' sweeps are
        fake_run(tmp_path / 'finetune' / f'{n}', 'adam', 0, 0.5 + n / 100, dataset={'per_class': n,
                                                                                   'init_from': '/m/runs/encoder'})
        fake_run(tmp_path / 'scratch' / f'{n}', 'adam', 0, 0.3 + n / 100, dataset={'per_class': n, 'init_from': ''})
    for lr in (0.1, 0.01):  # two settings under one label
        fake_run(tmp_path / 'multiplier' / f'{lr}', 'sgd', 0, 0.6, dataset={'per_class': 10,
                                                                            'init_from': '/m/runs/encoder'})
        config = json.loads((tmp_path / 'multiplier' / f'{lr}' / 'config.json').read_text())
        config['optimizer']['learning_rate'] = lr
        (tmp_path / 'multiplier' / f'{lr}' / 'config.json').write_text(json.dumps(config))
    labels = parse_labels([f'{tmp_path / "finetune"}=fine-tuned', f'{tmp_path / "scratch"}=scratch',
                           f'{tmp_path / "multiplier"}=multiplier'])
    result = compare([tmp_path], labels=labels)
    curves = curves_against(result, 'dataset.per_class')
    assert sorted(curves) == ['fine-tuned', 'multiplier (learning_rate=0.01)', 'multiplier (learning_rate=0.1)',
                              'scratch']
    assert [x for x, _ in curves['fine-tuned']] == [1, 10]
    assert markdown(result).splitlines()[0].startswith('| name | ')
    # unnamed, a path is shown by its last part and only where it differs from what most groups share
    unnamed = curves_against(compare([tmp_path / 'finetune', tmp_path / 'scratch']), 'dataset.per_class')
    assert sorted(unnamed) == ['init_from=', 'init_from=encoder']
    assert 'fine-tuned (dataset.per_class=1)' in group_labels(result)  # without an x axis, per_class sets them apart
    with pytest.raises(ConfigError, match='expected PATH=NAME'):
        parse_labels(['just-a-name'])
    with pytest.raises(ConfigError, match='does not exist'):
        parse_labels([f'{tmp_path / "nope"}=x'])


def test_a_recorded_absolute_path_reads_relative_to_where_compare_runs(tmp_path, monkeypatch):
    encoder = tmp_path / 'runs' / 'encoder'
    fake_run(tmp_path / 'runs' / 'a', 'adam', 0, 0.6, dataset={'init_from': str(encoder)})
    fake_run(tmp_path / 'runs' / 'b', 'adam', 0, 0.3, dataset={'init_from': ''})
    monkeypatch.chdir(tmp_path)
    result = compare(['runs'])
    assert sorted(g['config']['dataset.init_from'] for g in result['groups']) == ['', 'runs/encoder']
    assert str(tmp_path) not in markdown(result)
    monkeypatch.chdir(tmp_path / 'runs' / 'a')  # elsewhere: the path as recorded
    assert str(encoder) in {g['config']['dataset.init_from'] for g in compare([tmp_path / 'runs'])['groups']}
