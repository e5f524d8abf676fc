"""`jaxdl compare DIR_OR_RUNS...`: the runs grouped by configuration (every config key but the seed), each
group's test and validation figures (and the EMA's, `test_ema.*`, where kept) as mean, standard deviation and
min..max over its seeds, and a PNG of the validation curves with the band over seeds.

It reads only what every run directory holds (config.json, summary.json, metrics.jsonl) and never the current
default config, so it compares runs written by any jaxdl version. It imports no TensorFlow or JAX.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from jaxdl.config import INSTRUMENT_KEYS, PLACEMENT_KEYS, flatten
from jaxdl.errors import CheckpointError, ConfigError
from jaxdl.logging import TIMING_KEYS

# Record fields that are not figures.
NOT_FIGURES = ('count', 'step', 'epoch', 'learning_rate', *TIMING_KEYS)
# The figures a table shows by default, the first of these each split has (after its loss), and the curve plotted
# beside the loss; --metrics picks others.
MAIN_FIGURES = ('accuracy', 'mean_iou', 'map_50', 'map', 'rmse', 'mae', 'mean_abs_rank_error', 'pixel_accuracy')
# The summary's figures a group collects: the selected model's test and validation, and those of the EMA of its
# weights where the runs kept one (optimizer.ema_decay).
SPLITS = ('test', 'test_ema', 'validation', 'validation_ema')
# Keys that differ between runs without being a different experiment: where the arrays lived, and the seed.
IGNORED = ('seed', 'dataset.data_dir', *PLACEMENT_KEYS, *INSTRUMENT_KEYS)


def find_runs(paths) -> list[Path]:
    """The run directories under `paths` (each one a run, or a folder of runs at any depth)."""
    runs = []
    for path in map(Path, paths):
        if not path.exists():
            raise CheckpointError(f'{path} does not exist')
        if (path / 'config.json').is_file():
            runs.append(path)
            continue
        found = sorted(
            p.parent
            for p in path.rglob('config.json')
            if (p.parent / 'metrics.jsonl').exists() and p.parent.name != 'from_scratch'
        )
        if not found:
            raise CheckpointError(
                f'{path} is not a jaxdl run directory and holds none (no config.json with a metrics.jsonl beside it)'
            )
        runs.extend(found)
    return list(dict.fromkeys(runs))


def load(run: Path) -> dict:
    config = json.loads((run / 'config.json').read_text())
    summary_path = run / 'summary.json'
    records = (
        [json.loads(line) for line in (run / 'metrics.jsonl').read_text().splitlines() if line.strip()]
        if (run / 'metrics.jsonl').exists()
        else []
    )
    return {
        'path': run,
        'config': {k: _from_here(v) for k, v in flatten(config).items()},
        'seed': config.get('seed'),
        'summary': json.loads(summary_path.read_text()) if summary_path.exists() else None,
        'records': records,
    }


def _from_here(value):
    """A path the run recorded absolute (transfer.init_from, so a rerun finds it from anywhere), relative to the
    current directory when it lies under it: tables, legends and JSON read the same on every machine."""
    if isinstance(value, str) and value.startswith('/'):
        try:
            return str(Path(value).relative_to(Path.cwd()))
        except ValueError:
            return value
    return value


def _stats(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {'mean': mean, 'std': std, 'min': min(values), 'max': max(values), 'n': n}


def compare(paths, ignore=(), labels: dict[str, str] | None = None) -> dict:
    """{'keys': the config keys that differ, 'groups': [...], 'unfinished': [...]} for the runs under `paths`.
    `ignore`: more keys not to group by (e.g. a batch size that had to shrink for the smallest few-shot subset).
    `labels`: {a folder of runs: the name its groups go by in tables and legends} (`--label PATH=NAME`)."""
    runs = [load(r) for r in find_runs(paths)]
    tasks = sorted({str(r['config'].get('task.name')) for r in runs})
    if len(tasks) > 1:
        raise ConfigError(
            f'these runs are of different tasks ({", ".join(tasks)}); their figures do not compare: '
            f'compare the runs of one task at a time'
        )
    keys = sorted({k for r in runs for k in r['config']} - set(IGNORED) - set(ignore))
    differing = [k for k in keys if len({json.dumps(r['config'].get(k), sort_keys=True) for r in runs}) > 1]
    groups: dict[tuple, list] = {}
    for run in runs:
        signature = tuple(json.dumps(run['config'].get(k), sort_keys=True) for k in differing)
        groups.setdefault(signature, []).append(run)
    out, unfinished = [], []
    for signature, members in groups.items():
        finished = [m for m in members if m['summary']]
        unfinished += [str(m['path']) for m in members if not m['summary']]
        figures = {}
        for split in SPLITS:
            names = sorted(
                {
                    k
                    for m in finished
                    for k, v in (m['summary'].get(split) or {}).items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_FIGURES
                }
            )
            for name in names:
                values = [
                    m['summary'][split][name]
                    for m in finished
                    if isinstance((m['summary'].get(split) or {}).get(name), (int, float))
                ]
                if values:
                    figures[f'{split}.{name}'] = _stats(values)
        out.append(
            {
                'config': {k: json.loads(v) for k, v in zip(differing, signature)},
                'label': _named(members, labels or {}),
                'seeds': sorted(m['seed'] for m in finished),
                'runs': [str(m['path']) for m in members],
                'figures': figures,
                '_members': finished,
            }
        )
    return {'task': tasks[0] if tasks else None, 'keys': differing, 'groups': out, 'unfinished': unfinished}


def _named(members: list[dict], labels: dict[str, str]) -> str | None:
    """The name of the deepest labelled folder holding every run of a group, or None."""
    holding = [
        (len(Path(folder).resolve().parts), name)
        for folder, name in labels.items()
        if all(Path(folder).resolve() in (m['path'].resolve(), *m['path'].resolve().parents) for m in members)
    ]
    return max(holding)[1] if holding else None


def parse_labels(specs: list[str]) -> dict[str, str]:
    """`--label PATH=NAME` (repeatable) -> {PATH: NAME}; PATH must exist."""
    labels = {}
    for spec in specs:
        folder, sep, name = spec.partition('=')
        if not sep or not folder or not name.strip():
            raise ConfigError(f"--label {spec!r}: expected PATH=NAME, e.g. --label 'runs/probe=linear probe'")
        if not Path(folder).exists():
            raise ConfigError(f'--label {spec!r}: {folder} does not exist')
        labels[folder] = name.strip()
    return labels


def default_figures(result: dict) -> list[str]:
    """Per split (test, then validation): its loss and the first main figure it has."""
    present = {n for g in result['groups'] for n in g['figures']}
    names = []
    for split in ('test', 'validation'):
        names += [f'{split}.loss'] if f'{split}.loss' in present else []
        names += [f'{split}.{m}' for m in MAIN_FIGURES if f'{split}.{m}' in present][:2]
    return names


def markdown(result: dict, metrics=None) -> str:
    """A table: the differing keys, the seeds, then each figure as mean ± std (min..max)."""
    groups = result['groups']
    names = list(metrics or default_figures(result))
    named = any(g.get('label') for g in groups)
    header = [*(['name'] if named else []), *result['keys'], 'seeds', *names]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for group in groups:
        cells = [group.get('label') or ''] if named else []
        cells += [str(group['config'][k]) for k in result['keys']]
        cells.append(f'{len(group["seeds"])} ({", ".join(map(str, group["seeds"]))})')
        for name in names:
            s = group['figures'].get(name)
            cells.append('-' if s is None else f'{s["mean"]:.4f} ± {s["std"]:.4f} ({s["min"]:.4f}..{s["max"]:.4f})')
        lines.append('| ' + ' | '.join(cells) + ' |')
    if result['unfinished']:
        lines.append('')
        lines.append(f'unfinished (left out): {", ".join(result["unfinished"])}')
    return '\n'.join(lines)


def as_json(result: dict) -> str:
    return json.dumps(
        {**result, 'groups': [{k: v for k, v in g.items() if not k.startswith('_')} for g in result['groups']]},
        indent=2,
        default=str,
    )


def group_labels(result: dict, *, against: str | None = None, short: bool = False) -> list[str]:
    """What sets each group apart, for a legend: the keys whose value is not the one most groups share (all
    differing keys where no value is shared more than others), leaving out `against` (the x axis of a plot);
    'the shared setting' for the group that changes none, as the full experiment of an ablation. A group named by
    `--label` goes by its name, followed by those keys where groups of the same name differ. `short`: each key
    by its last part; a path by its last part."""
    keys = [k for k in result['keys'] if k != against]

    def mode(key):
        counts: dict[str, int] = {}
        for g in result['groups']:
            value = json.dumps(g['config'][key], sort_keys=True)
            counts[value] = counts.get(value, 0) + 1
        ranked = sorted(counts.values(), reverse=True)
        shared = max(counts, key=lambda value: counts[value])
        return shared if len(ranked) == 1 or ranked[0] > ranked[1] else None

    def shown(value):
        return value.rstrip('/').rsplit('/', 1)[-1] if short and isinstance(value, str) and '/' in value else value

    modes = {k: mode(k) for k in keys}
    auto = [
        ', '.join(
            f'{k.rsplit(".", 1)[-1] if short else k}={shown(v)}'
            for k, v in group['config'].items()
            if k in modes and json.dumps(v, sort_keys=True) != modes[k]
        )
        for group in result['groups']
    ]
    labels = []
    for group, own in zip(result['groups'], auto):
        name = group.get('label')
        if name is None:
            labels.append(own or ('the shared setting' if keys else 'runs'))
            continue
        namesakes = [g['config'] for g in result['groups'] if g.get('label') == name]
        apart = [k for k in keys if len({json.dumps(c[k], sort_keys=True) for c in namesakes}) > 1]
        suffix = ', '.join(f'{k.rsplit(".", 1)[-1] if short else k}={shown(group["config"][k])}' for k in apart)
        labels.append(f'{name} ({suffix})' if suffix else name)
    return labels


def plot_curves(result: dict, path: Path, metric: str | None = None) -> Path:
    """Validation loss and one more validation figure against the step: per configuration the mean over its seeds
    as a line, min..max as a band."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    members = [m for g in result['groups'] for m in g['_members']]
    validation_keys = {k for m in members for r in m['records'] if r.get('split') == 'validation' for k in r}
    if metric is None:
        metric = next((k for k in MAIN_FIGURES if k in validation_keys), None)
    panels = ['loss'] + ([metric] if metric else [])
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    labels = group_labels(result)
    for g, group in enumerate(result['groups']):
        label = labels[g]
        for ax, name in zip(axes[0], panels):
            curves: dict = {}
            for member in group['_members']:
                for record in member['records']:
                    if record.get('split') == 'validation' and isinstance(record.get(name), (int, float)):
                        curves.setdefault(record['step'], []).append(record[name])
            steps = sorted(curves)
            if not steps:
                continue
            mean = [sum(curves[s]) / len(curves[s]) for s in steps]
            colour = colours[g % len(colours)]
            ax.plot(steps, mean, color=colour, marker='o', markersize=3, label=f'{label} ({len(group["seeds"])} seeds)')
            ax.fill_between(
                steps,
                [min(curves[s]) for s in steps],
                [max(curves[s]) for s in steps],
                color=colour,
                alpha=0.2,
                linewidth=0,
            )
    for ax, name in zip(axes[0], panels):
        ax.set_xlabel('step')
        ax.set_ylabel(f'validation {name}')
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle('validation curves: mean over seeds, band min..max')
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


def curves_against(result: dict, key: str, metric: str = 'test.accuracy') -> dict[str, list[tuple]]:
    """{label of the other differing keys: [(value of `key`, [metric of each seed]), ...] sorted by value}."""
    if key not in result['keys']:
        raise ConfigError(
            f'--against {key}: not a config key these runs differ in (they differ in: '
            f'{", ".join(result["keys"]) or "nothing"})'
        )
    split, _, name = metric.partition('.')
    lines: dict = {}
    for group, label in zip(result['groups'], group_labels(result, against=key, short=True)):
        values = [
            m['summary'][split][name]
            for m in group['_members']
            if isinstance((m['summary'].get(split) or {}).get(name), (int, float))
        ]
        if values:
            lines.setdefault(label, []).append((group['config'][key], values))
    if not lines:
        raise ConfigError(f'--metrics {metric}: no finished run reports it (e.g. test.accuracy, validation.loss)')
    return {label: sorted(points, key=lambda p: p[0]) for label, points in sorted(lines.items())}


def plot_against(result: dict, key: str, path: Path, metric: str = 'test.accuracy') -> Path:
    """`metric` (a summary figure, e.g. test.accuracy) against the config value `key` (e.g. examples per class):
    one line per configuration of the other differing keys, its mean over seeds, each seed a dot, the band
    min..max. The data-efficiency curve of a transfer experiment is this with key dataset.train_examples_per_class."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    lines = curves_against(result, key, metric)
    figure, ax = plt.subplots(figsize=(8, 5))
    for label, points in lines.items():
        xs = [p[0] for p in points]
        means = [sum(v) / len(v) for _, v in points]
        (line,) = ax.plot(xs, means, marker='o', label=f'{label} ({len(points[0][1])} seeds)')
        ax.fill_between(
            xs,
            [min(v) for _, v in points],
            [max(v) for _, v in points],
            color=line.get_color(),
            alpha=0.15,
            linewidth=0,
        )
        for x, v in points:
            ax.scatter([x] * len(v), v, color=line.get_color(), s=10, alpha=0.6)
    if all(isinstance(x, (int, float)) and x > 0 for points in lines.values() for x, _ in points):
        ax.set_xscale('log')
        ticks = sorted({x for points in lines.values() for x, _ in points})
        ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f'{metric} against {key}: mean over seeds (dots: each seed; band: min..max)', fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
