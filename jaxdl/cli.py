"""`jaxdl train|evaluate|predict|export|rerun|sweep|compare|experiments|datasets|prepare`.

Heavy libraries (TensorFlow, JAX) are imported inside each command, so `jaxdl --help` and `jaxdl datasets`
answer at once. Errors a user can fix (config, dataset, checkpoint, image, workdir, divergence) print one line and
exit with 2; a run stopped by SIGTERM/SIGINT saves a checkpoint and exits with 75 (rerun the command to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jaxdl.errors import CheckpointError, InputError, JaxdlError, Preempted
from jaxdl.registry import WEIGHTS

EXIT_USAGE = 2
EXIT_MISMATCH = 1
EXIT_PREEMPTED = 75  # sysexits' EX_TEMPFAIL: "try again" (the checkpoint is saved; the same command resumes)


def _quiet_libraries() -> None:
    """Library warnings a user cannot act on (orbax's absl notes, tfds' use of deprecated tf.data ops)."""
    import logging

    from jaxdl.logging import drop_harmless_library_notes

    logging.getLogger('absl').setLevel(logging.ERROR)
    logging.getLogger('tensorflow').setLevel(logging.ERROR)
    drop_harmless_library_notes()


# ----------------------------------------------------------------------------------------------- commands


def cmd_train(args, overrides: list[str]) -> int:
    from jaxdl import config as config_lib
    from jaxdl import distributed

    config = config_lib.load_config_file(args.config)
    config_lib.apply_updates(config, dict(config_lib.parse_override(o) for o in overrides))
    config_lib.validate(config)  # before TensorFlow is imported: a typo is reported in about a second
    distributed.initialize(
        coordinator=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
        auto=args.distributed,
    )
    from jaxdl.train.loop import fit

    workdir = args.workdir or str(Path('runs') / Path(args.config.partition(':')[0]).stem)
    result = fit(config, workdir, show_progress=not args.no_progress)
    print(
        json.dumps(
            {
                'workdir': str(result.workdir),
                'stop_reason': result.summary['stop_reason'],
                'selected_step': result.summary['selected_step'],
                'test': _headline(result.summary['test']),
            },
            indent=2,
        )
    )
    return 0


def _headline(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not isinstance(v, list)}


def cmd_evaluate(args, _) -> int:
    from jaxdl.runs import evaluate_run, read_run_files

    config, _env = read_run_files(Path(args.workdir), trust_code=args.trust_code)
    split = args.split or config.dataset.test_split
    print(
        json.dumps(
            evaluate_run(args.workdir, split, args.checkpoint, weights=args.weights, trust_code=args.trust_code),
            indent=2,
        )
    )
    return 0


def load_image(path: str, shape: tuple[int, int, int]):
    """Reads a PNG/JPEG as uint8 [H, W, C] in the model's input size and channel count.

    Channel count and size are converted (and said so on stderr); an aspect ratio far from the model's is refused,
    since squashing it would show the model an image unlike anything it was trained on."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    height, width, channels = shape
    try:
        image: Image.Image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise InputError(f'{path}: no such file') from None
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f'{path}: not a readable PNG or JPEG image ({e})') from None
    mode = {1: 'L', 3: 'RGB'}.get(channels)
    if mode is None:
        raise InputError(
            f'{path}: the model takes {channels}-channel input; only 1 (grayscale) or 3 (RGB) can be '
            f'made from an image file'
        )
    if image.mode != mode:
        print(
            f'note: {path}: converted {image.mode} to {mode} ({channels} channel(s), as the model expects)',
            file=sys.stderr,
        )
        image = image.convert(mode)
    if image.size != (width, height):
        ratio = (image.size[0] / image.size[1]) / (width / height)
        if not 0.8 <= ratio <= 1.25:
            raise InputError(
                f'{path}: {image.size[0]}x{image.size[1]} (width x height) has an aspect ratio too far '
                f'from the model input {width}x{height}; crop it to that shape first'
            )
        print(
            f'note: {path}: resized {image.size[0]}x{image.size[1]} to the model input {width}x{height}',
            file=sys.stderr,
        )
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, np.uint8).reshape(height, width, channels)


def cmd_predict(args, _) -> int:
    import numpy as np

    from jaxdl.runs import load_run, predict_images

    run = load_run(args.workdir, args.checkpoint, weights=args.weights, trust_code=args.trust_code)
    raw = np.stack([load_image(p, run.image_shape) for p in args.images])
    outputs = predict_images(run, raw)
    from PIL import Image

    from jaxdl.data.kinds import PredictOptions, data_kind

    kind, options = data_kind(run.task), PredictOptions(top=args.top, min_score=args.min_score)
    results = []
    for path, image, output in zip(args.images, raw, _rows(outputs)):
        shown = kind.prediction(image, output, run.task, run.class_names, options)
        result = {'image': path, **shown.fields, 'summary': shown.summary}
        if shown.picture is not None:
            picture = Path(args.output_dir) / f'{Path(path).stem}.{shown.picture_suffix or kind.name}.png'
            picture.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(shown.picture).save(picture)
            result['picture'] = str(picture)
        results.append(result)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f'{r["image"]}: {r["summary"]}' + (f' -> {r["picture"]}' if 'picture' in r else ''))
    return 0


def cmd_export(args, _) -> int:
    from jaxdl.export import export, parse_batch
    from jaxdl.logging import display_path

    metadata = export(
        args.workdir,
        args.format,
        args.output,
        checkpoint=args.checkpoint,
        weights=args.weights,
        batch=parse_batch(args.batch),
        force=args.force,
        trust_code=args.trust_code,
    )
    shape = ', '.join('N' if d is None else str(d) for d in metadata['input']['shape'])
    print(
        f'wrote {display_path(args.output)}: {metadata["file"]} and metadata.json ({args.format}; uint8 [{shape}] -> '
        f'{", ".join(metadata["outputs"])}; checkpoint step {metadata["run"]["checkpoint_step"]}, '
        f'{metadata["run"]["weights"]} weights); load it with {metadata["load"]}'
    )
    return 0


def _rows(outputs):
    """Per-image rows of a batch of predictions (an array, or a dict of arrays)."""
    if isinstance(outputs, dict):
        return [{k: v[i] for k, v in outputs.items()} for i in range(len(next(iter(outputs.values()))))]
    return list(outputs)


def placement_differences(recorded: dict, rerun: dict) -> list[str]:
    """What besides the config changes a run's floats: the backend, the devices, the usable CPU cores (XLA's CPU
    kernels split sums by thread count), the XLA flags, deterministic GPU ops and the library versions."""
    from jaxdl.determinism import rerun_reasons

    reasons = []
    for key, what in (
        ('backend', 'backend'),
        ('devices', 'devices'),
        ('cpu_cores', 'usable CPU cores'),
        ('xla_flags', 'XLA_FLAGS'),
        ('deterministic', 'deterministic ops'),
        ('versions', 'library versions'),
    ):
        if key in recorded and recorded.get(key) != rerun.get(key):
            reasons.append(f'{what}: {recorded.get(key)} then, {rerun.get(key)} now')
    return reasons + rerun_reasons(recorded, rerun)


def cmd_rerun(args, _) -> int:
    from jaxdl.runs import read_run_files
    from jaxdl.train.loop import fit

    workdir = Path(args.workdir)
    config, recorded_env = read_run_files(workdir, trust_code=args.trust_code)
    if not (workdir / 'summary.json').exists():
        raise CheckpointError(
            f'{workdir} has no summary.json: the run did not finish, so there is nothing to '
            f'compare; resume it with `jaxdl train` instead'
        )
    new = Path(args.workdir_new or f'{workdir.as_posix().rstrip("/")}-rerun')
    result = fit(config, new, show_progress=not args.no_progress)
    old = json.loads((workdir / 'summary.json').read_text())
    differences = {}
    for part in ('validation', 'test'):
        for key in sorted(set(old.get(part) or {}) | set(result.summary.get(part) or {})):
            a, b = (old.get(part) or {}).get(key), (result.summary.get(part) or {}).get(key)
            if a != b:
                differences[f'{part}.{key}'] = {'recorded': a, 'rerun': b}
    for key in ('selected_step', 'stop_reason'):
        if old.get(key) != result.summary.get(key):
            differences[key] = {'recorded': old.get(key), 'rerun': result.summary.get(key)}
    print(
        json.dumps(
            {'recorded': str(workdir), 'rerun': str(new), 'match': not differences, 'differences': differences},
            indent=2,
        )
    )
    print(
        'final metrics match the recorded run'
        if not differences
        else f'final metrics DIFFER from the recorded run in {len(differences)} field(s)',
        file=sys.stderr,
    )
    if differences:
        for reason in placement_differences(recorded_env or {}, json.loads((new / 'environment.json').read_text())):
            print(f'  a possible cause: {reason}', file=sys.stderr)
    return 0 if not differences else EXIT_MISMATCH


def cmd_sweep(args, _) -> int:
    from jaxdl.sweep import parse_ablations, parse_grid, sweep

    records = sweep(
        args.config,
        parse_grid(args.grid or []),
        args.seeds,
        args.workdir,
        parallel=args.parallel,
        echo=lambda text: print(text, file=sys.stderr, flush=True),
        ablations=parse_ablations(args.ablate or []),
    )
    print(json.dumps({'workdir': str(Path(args.workdir).absolute()), 'runs': records}, indent=2))
    failed = [r for r in records if r['status'] != 'finished']
    return 0 if not failed else EXIT_MISMATCH


def cmd_compare(args, _) -> int:
    from jaxdl.compare import as_json, compare, markdown, parse_labels, plot_against, plot_curves

    result = compare(args.runs, ignore=args.ignore, labels=parse_labels(args.label))
    print(as_json(result) if args.json else markdown(result, args.metrics.split(',') if args.metrics else None))
    figure = args.figure or (Path(args.runs[0]) / 'compare.png' if Path(args.runs[0]).is_dir() else None)
    if figure and not args.no_figure:
        if args.against:
            metric = args.metrics.split(',')[0] if args.metrics else 'test.accuracy'
            print(
                f'{metric} against {args.against}: {plot_against(result, args.against, figure, metric)}',
                file=sys.stderr,
            )
        else:
            print(f'validation curves: {plot_curves(result, figure)}', file=sys.stderr)
    return 0


def cmd_experiments(args, _) -> int:
    from jaxdl import experiments

    print(f'built-in experiments (jaxdl train NAME; their files: {experiments.DIRECTORY}):')
    for name in experiments.names():
        print(f'  {name:<26} {experiments.summary(name)}')
    return 0


def cmd_datasets(args, _) -> int:
    from jaxdl.data import CATALOG, builtin_datasets, prepare_command, prepared_versions, resolve_data_dir
    from jaxdl.logging import display_path

    data_dir = resolve_data_dir(args.data_dir or '')
    print(f'data dir: {display_path(data_dir)}')
    print('built-in (prepared offline on first use):')
    for name, description in builtin_datasets().items():
        description = description.split(': ', 1)[-1] if description.startswith('`') else description
        versions = prepared_versions(name, data_dir)
        print(f'  {name:<14} {"prepared " + ",".join(versions) if versions else "not prepared yet":<22} {description}')
    print(
        "your own: 'folder:PATH' (class subfolders of PNG/JPEG), 'package.module:BuilderClass' (a TFDS builder), "
        'or the name jaxdl.data.from_arrays returns'
    )
    print(
        f'catalog (never downloaded at run time; prepare one with `{prepare_command("NAME", data_dir)}` on a '
        'machine with internet; add --array-record to stream it):'
    )
    for name, holds in CATALOG.items():
        versions = prepared_versions(name, data_dir)
        print(f'  {name:<16} {"prepared " + ",".join(versions) if versions else "not prepared":<22} {holds}')
    return 0


def cmd_prepare(args, _) -> int:
    from jaxdl.data import resolve_data_dir
    from jaxdl.data.pipeline import prepare_dataset

    data_dir = resolve_data_dir(args.data_dir or '')
    builder = prepare_dataset(args.name, data_dir, array_record=args.array_record)
    print(
        json.dumps(
            {
                'name': args.name,
                'data_dir': data_dir,
                'file_format': builder.info.file_format.value,
                'splits': {k: v.num_examples for k, v in builder.info.splits.items()},
            },
            indent=2,
        )
    )
    return 0


# ----------------------------------------------------------------------------------------------- parsing


TRUST_CODE_HELP = (
    'import the model, task or dataset code the run names from the folders it recorded, outside '
    'the installed packages and the current directory (that code runs: only for runs you trust)'
)
EXPERIMENT_HELP = (
    'a built-in experiment by name (`jaxdl experiments` lists them) or an experiment file defining '
    'get_config(); NAME:ARG or FILE:ARG passes ARG to get_config'
)
WEIGHTS_HELP = "raw: the checkpoint's weights; ema: their moving average (runs trained with optimizer.ema_decay)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='jaxdl', description='Train, evaluate and use JAX image models.')
    from jaxdl import __version__

    parser.add_argument('--version', action='version', version=f'jaxdl {__version__}')
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser(
        'train',
        help='train an experiment config (resumes if the workdir has checkpoints)',
        description='Overrides: --config.KEY=VALUE, e.g. --config.train.batch_size=32',
    )
    p.add_argument('config', help=EXPERIMENT_HELP)
    p.add_argument('--workdir', help='run directory (default: runs/<config name>)')
    p.add_argument('--no-progress', action='store_true', help='no progress bar or table')
    g = p.add_argument_group('several processes (docs/distributed.md)')
    g.add_argument('--distributed', action='store_true', help='join a cluster JAX detects (Cloud TPU, SLURM, Open MPI)')
    g.add_argument('--coordinator', help='HOST:PORT of process 0 (or $JAXDL_COORDINATOR_ADDRESS)')
    g.add_argument('--num-processes', type=int, help='how many processes run this command ($JAXDL_NUM_PROCESSES)')
    g.add_argument('--process-id', type=int, help='this process, 0..N-1 ($JAXDL_PROCESS_ID)')
    p.set_defaults(run=cmd_train, takes_overrides=True)
    p = sub.add_parser('evaluate', help="evaluate a run's checkpoint on a split; JSON metrics on stdout")
    p.add_argument('workdir')
    p.add_argument('--split', help="default: the config's test split")
    p.add_argument('--checkpoint', default='best', help='best | latest | STEP (default: best)')
    p.add_argument('--weights', default='raw', choices=WEIGHTS, help=WEIGHTS_HELP)
    p.add_argument('--trust-code', action='store_true', help=TRUST_CODE_HELP)
    p.set_defaults(run=cmd_evaluate)
    p = sub.add_parser(
        'predict',
        help='predict PNG/JPEG images: top classes with probabilities, regression targets '
        '(e.g. an angle), or a PNG of the mask overlaid or the boxes drawn',
    )
    p.add_argument('workdir')
    p.add_argument('images', nargs='+')
    p.add_argument('--checkpoint', default='best')
    p.add_argument('--weights', default='raw', choices=WEIGHTS, help=WEIGHTS_HELP)
    p.add_argument('--top', type=int, default=3)
    p.add_argument(
        '--output-dir',
        default='.',
        help='where pictures of predictions go (segmentation: '
        'IMAGE.segmentation.png, detection: IMAGE.detections.png; '
        'default: here)',
    )
    p.add_argument('--min-score', type=float, default=0.3, help='detection: boxes scoring at least this')
    p.add_argument('--json', action='store_true')
    p.add_argument('--trust-code', action='store_true', help=TRUST_CODE_HELP)
    p.set_defaults(run=cmd_predict)
    p = sub.add_parser(
        'export',
        help='export a run as a model that needs no jaxdl: StableHLO (jax alone), a TF SavedModel or ONNX; '
        'it takes uint8 images and returns what predict computes',
    )
    p.add_argument('workdir')
    p.add_argument('--format', required=True, help='stablehlo | savedmodel | onnx (onnx: pip install jaxdl[onnx])')
    p.add_argument('--output', required=True, help='the folder to write: the model and its metadata.json')
    p.add_argument('--checkpoint', default='best', help='best | latest | STEP (default: best)')
    p.add_argument('--weights', default='raw', choices=WEIGHTS, help=WEIGHTS_HELP)
    p.add_argument('--batch', default='dynamic', help="the batch size it takes: N, or 'dynamic' for any (default)")
    p.add_argument('--force', action='store_true', help='replace --output if it exists')
    p.add_argument('--trust-code', action='store_true', help=TRUST_CODE_HELP)
    p.set_defaults(run=cmd_export)
    p = sub.add_parser('rerun', help="rerun a run's recorded config and say whether the final metrics match")
    p.add_argument('workdir')
    p.add_argument('--workdir', dest='workdir_new', help='where the rerun trains (default: WORKDIR-rerun)')
    p.add_argument('--no-progress', action='store_true')
    p.add_argument('--trust-code', action='store_true', help=TRUST_CODE_HELP)
    p.set_defaults(run=cmd_rerun)
    p = sub.add_parser(
        'sweep',
        help='train every combination of a grid of config values and of seeds, one run '
        'directory each (resumable: finished runs are skipped)',
    )
    p.add_argument('config', help=EXPERIMENT_HELP)
    p.add_argument('--workdir', required=True, help='the sweep directory: one run directory per combination')
    p.add_argument('--seeds', type=int, default=1, help='seeds 0..N-1 of every combination (default 1)')
    p.add_argument(
        '--grid',
        action='append',
        metavar='KEY=V1,V2',
        help='config values to sweep, e.g. optimizer.name=sgd,adam (repeat for more keys)',
    )
    p.add_argument(
        '--ablate',
        action='append',
        metavar='KEY=V[,KEY=V]',
        help='an ablation: the experiment once more with these set (repeat for each component); the '
        'experiment as it is runs too',
    )
    p.add_argument('--parallel', type=int, default=1, help='runs at once, each on its share of the cores')
    p.set_defaults(run=cmd_sweep)
    p = sub.add_parser(
        'compare', help='tabulate runs by configuration: mean, std and range over seeds; plot the validation curves'
    )
    p.add_argument('runs', nargs='+', help='run directories, or folders of them (e.g. a sweep directory)')
    p.add_argument('--json', action='store_true', help='JSON instead of a markdown table (every figure)')
    p.add_argument(
        '--metrics',
        help="the table's figures, e.g. test.accuracy,validation.loss (default: each split's loss and main figures)",
    )
    p.add_argument('--figure', help='where the PNG of validation curves goes (default: FIRST_DIR/compare.png)')
    p.add_argument(
        '--against',
        metavar='KEY',
        help='plot a test figure (the first of --metrics, default '
        'test.accuracy) against this config key instead, e.g. '
        'dataset.train_examples_per_class: a data-efficiency curve',
    )
    p.add_argument(
        '--ignore',
        metavar='KEY',
        action='append',
        default=[],
        help='a config key not to group by (repeat for more), e.g. a batch size that differs only '
        'where the data was too small for the usual one',
    )
    p.add_argument(
        '--label',
        metavar='PATH=NAME',
        action='append',
        default=[],
        help='a name for the runs under PATH in the table and the legends (repeat for more), e.g. '
        "--label 'runs/transfer/probe=linear probe'; the others are named by what sets them apart",
    )
    p.add_argument('--no-figure', action='store_true')
    p.set_defaults(run=cmd_compare)
    p = sub.add_parser('experiments', help='list the built-in experiments, which train by name')
    p.set_defaults(run=cmd_experiments)
    p = sub.add_parser('datasets', help='list the datasets jaxdl can train on and whether they are prepared')
    p.add_argument('--data-dir', help='TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)')
    p.set_defaults(run=cmd_datasets)
    p = sub.add_parser(
        'prepare',
        help='prepare a dataset into the data dir (a catalog dataset downloads: run it on '
        'a machine with internet), as ArrayRecord with --array-record to stream it',
    )
    p.add_argument('name', help="a built-in, a TFDS builder class 'package.module:Class', or a TFDS catalog name")
    p.add_argument('--data-dir', help='TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)')
    p.add_argument(
        '--array-record', action='store_true', help="ArrayRecord files, read by index (dataset.source='stream')"
    )
    p.set_defaults(run=cmd_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    overrides = [a for a in argv if a.startswith('--config.')]
    args = parser.parse_args([a for a in argv if not a.startswith('--config.')])
    if overrides and not getattr(args, 'takes_overrides', False):
        parser.error(f"{args.command} takes no --config overrides (it uses the run's recorded config)")
    _quiet_libraries()
    from jaxdl.sweep import pin_to_assigned_cores

    pin_to_assigned_cores()
    try:
        return args.run(args, overrides)
    except Preempted as e:
        print(f'jaxdl {args.command}: {e}', file=sys.stderr)
        return EXIT_PREEMPTED
    except JaxdlError as e:
        print(f'jaxdl {args.command}: error: {e}', file=sys.stderr)
        return EXIT_USAGE


if __name__ == '__main__':
    sys.exit(main())
