"""Experiment configuration: one locked ml_collections ConfigDict of defaults, loading, overrides, validation.

Every key a run can read is declared in `default_config()`; experiment files start from it, so a typo in an
experiment or on the command line is an error that names the key and its close matches, never a silently
ignored setting. Durations are written as "<n> epochs" or "<n> steps" and resolved once the epoch length is known.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ml_collections import ConfigDict

from jaxdl import experiments
from jaxdl.errors import ConfigError  # noqa: F401  (re-exported: configs raise it)

# Where a run's arrays live, not what it computes: a run may resume with other values (another device count or
# mesh), and its parameters then agree with an unmoved run's to float tolerance.
# train.deterministic chooses how the backend orders its sums, likewise not what a run computes.
PLACEMENT_KEYS = (
    'train.parallel',
    'train.mesh',
    'train.sharding_rules',
    'train.fsdp_min_size',
    'train.cpu_convolutions',
    'train.deterministic',
)
# What watches a run, not what it computes: a resumed run may add a tracker, a hook or a profile window.
INSTRUMENT_KEYS = (
    'train.hooks',
    'train.trackers',
    'train.profile',
    'train.peak_tflops',
    'tracking.project',
    'tracking.run_name',
    'tracking.mlflow_uri',
)
FSDP_MIN_SIZE = 1024


def default_config() -> ConfigDict:
    """Every key jaxdl reads, with its default. Experiment files override these."""
    c = ConfigDict()
    c.seed = 0  # initialisation, data order, augmentation and dropout all derive from it
    # The task and the model: a built-in name or an import path 'package.module:Attr' to your own code, and a
    # free-form dict of its settings, checked by its own constructor (jaxdl.tasks, jaxdl.models).
    c.task = ConfigDict(
        dict(
            name='classification',  # classification | multilabel | regression | segmentation | detection | import path
            options=ConfigDict(),  # e.g. regression: targets; segmentation: ignore_label; detection: max_objects
        )
    )
    c.dataset = ConfigDict(
        dict(
            # a built-in (`jaxdl datasets`), a TFDS catalog name, 'folder:PATH' (an image folder), an import path to a
            # TFDS builder class, or a name jaxdl.data.from_arrays returned
            name='digits',
            data_dir='',  # '' = $TFDS_DATA_DIR or ~/tensorflow_datasets
            label='label',  # the feature holding each example's class (classification, class selection)
            split_fractions=(0.8, 0.1, 0.1),  # folder:PATH without train/validation/test subfolders: seeded shares
            split_seed=0,  # the seed of that split (per class, so every split keeps the class balance)
            # TFDS split names, slices allowed ('train[:90%]')
            train_split='train',
            validation_split='validation',
            test_split='test',
            image_size=0,  # 0 keeps the dataset's size; n resizes to n x n
            mean=(0.0,),  # per channel (or one for all), applied after scaling pixels to [0, 1]
            std=(1.0,),  # per channel (or one for all): (pixel / 255 - mean) / std
            classes=(),  # keep only these class ids of the label feature, renumbered 0.. in this order
            train_examples_per_class=0,  # > 0: the first n training examples of each class only (few-shot data)
            shuffle_buffer=0,  # 0 = the whole split (exact uniform shuffle)
            cache=True,  # keep decoded, normalised images in memory
            # How examples are read. 'memory': the decoded split cached and shuffled in memory, every process reading
            # all of it (the built-in datasets). 'stream': each step's examples read by index from ArrayRecord files,
            # decoded per step, each process reading only its own rows; memory does not grow with the dataset.
            # 'auto': 'stream' when the decoded split would take more than memory_limit_mb, or a setting below needs it.
            source='auto',
            memory_limit_mb=2048,
            skip_corrupt_images=False,  # stream: an image that does not decode is left out (counted in summary.json)
            # Keep the central square of this share of the shorter side (e.g. 0.875), resized to image_size:
            # ImageNet's evaluation crop (training too, unless the random-resized crop draws the window there);
            # 0 = the whole image.
            center_crop=0.0,
            augment=ConfigDict(
                dict(
                    flip_left_right=False,  # random horizontal flips in training
                    crop_padding=0,  # random translation: pad by n pixels, crop back
                    crop_area=1.0,  # segmentation, detection: random crop of [crop_area, 1] of the image, resized back
                    # stream, classification: the random-resized ("Inception") crop, decoded from the JPEG window alone
                    random_resized_crop=False,
                    crop_scale=(0.08, 1.0),  # its share of the image's area
                    crop_ratio=(0.75, 4 / 3),  # its aspect ratio (width / height)
                    # RandAugment (jaxdl.data.randaugment), for data kinds whose targets do not move with the image: this
                    # many ops per image (timm's n, e.g. 2; 0 = off) at this magnitude (timm's m, 0-10, e.g. 9)
                    randaugment_layers=0,
                    randaugment_magnitude=9.0,
                    # Mixup and CutMix, in the train step, for tasks with class labels (jaxdl.train.mixing): lambda ~
                    # Beta(alpha, alpha); 0 = off. With both on, mix_switch_prob of the mixed batches CutMix; mix_prob of
                    # the batches are mixed at all.
                    mixup_alpha=0.0,
                    cutmix_alpha=0.0,
                    mix_switch_prob=0.5,
                    mix_prob=1.0,
                )
            ),
        )
    )
    c.model = ConfigDict(
        dict(
            name='cnn',  # cnn | resnet | vit | unet (jaxdl.models), or an import path to a linen or NNX class
            options=ConfigDict(),  # e.g. cnn: features, dense, dropout; resnet: depth, width, stem; unet: features
            dtype='float32',  # the compute dtype (parameters stay float32), for models that take a dtype
            freeze_batch_norm=False,  # BatchNorm uses and keeps its running statistics in training too (fine-tuning)
        )
    )
    c.optimizer = ConfigDict(
        dict(
            name='sgd',  # sgd | rmsprop | adam | adamw
            learning_rate=None,  # None = the optimizer's usual default (see jaxdl.optim.DEFAULT_LEARNING_RATES)
            momentum=0.9,  # sgd only (0 = plain sgd)
            nesterov=False,  # sgd, adam, adamw
            rmsprop_decay=0.9,  # rmsprop: the squared gradients' moving-average decay
            # adam, adamw: the moments' decays
            b1=0.9,
            b2=0.999,
            eps=1e-8,  # added to the denominator (adam, adamw, rmsprop)
            weight_decay=0.0,  # L2 added to the gradient (sgd, rmsprop, adam); decoupled for adamw
            clip_global_norm=0.0,  # 0 = no clipping
            accumulate_steps=1,  # > 1 accumulates gradients over that many steps (optax.MultiSteps)
            # An exponential moving average of the weights (parameters and model state, e.g. BatchNorm statistics),
            # evaluated beside them: 0 = off, else e.g. 0.999. Its decay warms up as min(ema_decay, (1+t)/(10+t)) over
            # the t updates so far, so early averages do not hold the initial weights for long.
            ema_decay=0.0,
            # Layer-wise learning-rate decay for fine-tuning (e.g. 0.75; 0 = off): layer i of L trains at
            # layer_decay ** (L - 1 - i) of the rate, L from the model's LAYER_INDEX (jaxdl's vit has one).
            layer_decay=0.0,
            # Parameter groups: (regex on the parameter path, e.g. 'backbone/.*', learning-rate multiplier) pairs;
            # the first match wins, unmatched parameters train at the full rate, multiplier 0 freezes a group.
            groups=(),
            schedule=ConfigDict(
                dict(
                    name='constant',  # constant | cosine | piecewise
                    warmup='0 steps',  # linear from 0 to the peak rate over this long (a duration)
                    drop_every='10 epochs',  # piecewise: multiply by drop_factor every this often
                    drop_factor=0.1,  # piecewise: the factor
                    final_fraction=0.0,  # cosine: final learning rate as a fraction of the peak
                )
            ),
        )
    )
    c.transfer = ConfigDict(
        dict(
            # a run's workdir, an orbax checkpoint directory, or a torchvision/timm weights file (.safetensors, .pth)
            # to initialise from; '' = scratch
            init_from='',
            checkpoint='best',  # which checkpoint of a workdir: best | latest | STEP
            weights='raw',  # raw | ema: a run's own weights or their EMA (a run trained with optimizer.ema_decay)
            reinitialize=('head/.*',),  # parameter paths (regex) freshly initialised instead of loaded
            compare_with_scratch=False,  # also train the same budget from scratch and report both test results
        )
    )
    c.train = ConfigDict(
        dict(
            batch_size=128,  # global: summed over every device and process
            eval_batch_size=256,  # global, for validation, extra splits and the test (the last batch padded)
            duration='30 epochs',  # how long to train: 'N epochs' or 'N steps'
            validate_every='1 epoch',  # a duration; the best checkpoint is chosen at these points
            log_every='10 steps',  # how often a training row goes to metrics.jsonl and the trackers
            checkpoint_every='1 epoch',  # also saved at every validation, so 'best' is always on disk
            # auto | jit | pmap | sharded (jit over a mesh, state replicated) | fsdp (state split over the mesh's fsdp
            # axis); see jaxdl.train.sharding. These placement keys may change when a run resumes.
            parallel='auto',
            mesh='',  # axis sizes, e.g. 'data=2,fsdp=4' ('' = every device on data, or on fsdp)
            sharding_rules=(),  # fsdp: (path regex, spec) pairs: '' replicated, 'auto', or per dimension 'fsdp,'
            fsdp_min_size=FSDP_MIN_SIZE,  # fsdp: leaves no rule names are split from this many numbers on
            cpu_convolutions='eigen',  # eigen | ynnpack (XLA:CPU's default): the kernels of a CPU step's convolutions
            # GPU: deterministic reductions and kernels (XLA's --xla_gpu_deterministic_ops, set before the backend
            # starts), so a rerun gives the same bits; see jaxdl.determinism. XLA:CPU is deterministic either way.
            deterministic=True,
            select='best',  # best (by validation loss) | best_ema (by the EMA's) | last: what test reads
            on_nonfinite='stop',  # a NaN/Inf loss or gradient: stop (naming the step) | skip that update
            # What watches the run (jaxdl.train.hooks): your hooks by import path ('package.module:MyHook', a Hook
            # subclass or a function of the config returning one), run after the loop's own, in this order.
            hooks=(),
            trackers=('tensorboard',),  # where the records go besides metrics.jsonl: tensorboard | wandb | mlflow
            profile='',  # e.g. 'steps 20-25': a jax.profiler trace of those steps ('' = off)
            peak_tflops=0.0,  # a device's peak TFLOP/s for MFU (0 = jaxdl.train.costs' table, if it knows it)
            early_stopping=ConfigDict(
                dict(
                    patience=0,  # validations without improvement before stopping; 0 = off
                    min_delta=0.0,  # an improvement smaller than this does not count
                )
            ),
        )
    )
    c.eval = ConfigDict(
        dict(
            # Splits scored while training besides validation, each logged under its own name; model selection reads
            # validation alone. E.g. ('train[:1000]',): the training data measured as validation is (no augmentation,
            # no dropout). The test split is never one: it is scored once, after training.
            splits=(),
            every='',  # how often ('' = with validation: train.validate_every)
        )
    )
    c.tracking = ConfigDict(
        dict(  # the W&B and MLflow trackers (train.trackers)
            project='jaxdl',  # the W&B project, the MLflow experiment
            run_name='',  # '' = the workdir's name
            mlflow_uri='',  # '' = MLFLOW_TRACKING_URI, else MLflow's default (e.g. 'sqlite:///mlflow.db')
        )
    )
    c.lock()
    for free_form in (c.task.options, c.model.options):  # their keys are the model's or task's own
        free_form.unlock()
    return c


# ---------------------------------------------------------------------------------------------------- loading


def load_config_file(path: str) -> ConfigDict:
    """Runs `get_config()` of an experiment: a file, or a built-in experiment by name (`digits_cnn`,
    jaxdl.experiments). `path:arg` passes `arg` to `get_config(arg)`.

    A file's directory becomes importable (first on sys.path), so a model, task or builder in a file beside the
    experiment (`model.name='my_models:ViT'`) is found from any current directory."""
    import sys

    file, _, arg = str(path).partition(':')
    file_path = _experiment_file(file)
    directory = str(file_path.resolve().parent)
    if file_path.parent != experiments.DIRECTORY and directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(f'jaxdl_experiment_{file_path.stem}', file_path)
    assert spec is not None and spec.loader is not None, file_path  # a .py file always has a loader
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        if not hasattr(module, 'get_config'):
            raise ConfigError(f'{file} defines no get_config()')
        config = module.get_config(arg) if arg else module.get_config()
    except AttributeError as e:  # a locked ConfigDict refusing an unknown key
        raise ConfigError(f'{file}: {_unknown_key_message(e)}') from None
    except (TypeError, ValueError) as e:  # a ConfigDict refusing a value of the wrong type
        raise ConfigError(f'{file}: {e}') from None
    if not isinstance(config, ConfigDict):
        raise ConfigError(f'{file}: get_config() returned {type(config).__name__}, not a ConfigDict')
    return config


def _experiment_file(file: str) -> Path:
    if Path(file).is_file():
        return Path(file)
    if (built_in := experiments.path(file)) is not None:
        return built_in
    raise ConfigError(
        f'{file!r} is neither an experiment file (a Python file defining get_config()) nor a built-in '
        f'experiment; the built-in ones (`jaxdl experiments`): {", ".join(experiments.names())}'
    )


def config_from_json(text: str) -> ConfigDict:
    """Rebuilds a run's config from its config.json over the current defaults (rerun, evaluate, predict)."""
    config = default_config()
    apply_updates(config, flatten(json.loads(text)))
    return config


def flatten(tree: dict, prefix: str = '') -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            flat.update(flatten(value, name + '.'))
        else:
            flat[name] = value
    return flat


def all_keys(config: ConfigDict, prefix: str = '') -> list[str]:
    keys = []
    for key, value in config.items():
        keys.append(prefix + key)
        if isinstance(value, ConfigDict):
            keys.extend(all_keys(value, prefix + key + '.'))
    return keys


def _close_matches(key: str, config: ConfigDict) -> str:
    keys = all_keys(config)
    matches = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
    leaf = key.rsplit('.', 1)[-1]
    matches += [k for k in keys if k.rsplit('.', 1)[-1] == leaf and k not in matches]
    return f'; did you mean {", ".join(repr(m) for m in matches[:4])}?' if matches else ''


def _unknown_key_message(error: AttributeError) -> str:
    found = re.search(r'Key "([^"]+)" does not exist', str(error))
    key = found.group(1) if found else str(error)
    return f'unknown config key {key!r}{_close_matches(key, default_config())}'


def parse_override(text: str) -> tuple[str, Any]:
    """`--config.a.b=value` -> ('a.b', value). Values are Python literals where they parse, else strings."""
    if not text.startswith('--config.') or '=' not in text:
        raise ConfigError(f'cannot read override {text!r}: write --config.KEY=VALUE, e.g. --config.train.batch_size=64')
    key, _, raw = text[len('--config.') :].partition('=')
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key, value


def _free_form(node: ast.expr) -> bool:
    """A group whose keys are not declared (model.options, task.options): any key may be set there."""
    return isinstance(node, ConfigDict) and not node.is_locked


def apply_updates(config: ConfigDict, updates: dict[str, Any]) -> ConfigDict:
    """Sets dotted keys, refusing unknown keys and values of the wrong type with a message naming the key.
    Inside a free-form group (model.options, task.options) any key is accepted; its owner checks it."""
    for key, value in updates.items():
        *parents, leaf = key.split('.')
        node = config
        for part in parents:
            if _free_form(node) and part not in node:
                node[part] = ConfigDict()
            if not isinstance(node, ConfigDict) or part not in node:
                raise ConfigError(f'unknown config key {key!r}{_close_matches(key, config)}')
            node = node[part]
        if _free_form(node):
            if leaf in node:
                del node[leaf]  # free-form: a value of any type replaces the old one
            node[leaf] = ConfigDict(value) if isinstance(value, dict) else value
            continue
        if not isinstance(node, ConfigDict) or leaf not in node:
            raise ConfigError(f'unknown config key {key!r}{_close_matches(key, config)}')
        current = node[leaf]
        if _free_form(current) and isinstance(value, dict):
            node[leaf] = ConfigDict(value)  # e.g. --config.model.options="{'depth': 10}"
            node[leaf].unlock()
            continue
        if isinstance(current, ConfigDict):
            raise ConfigError(f'config key {key!r} is a group; set one of its fields, e.g. {key}.{next(iter(current))}')
        if isinstance(current, tuple) and isinstance(value, (list, int, float)):
            value = tuple(value) if isinstance(value, list) else (value,)
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(current, str) and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # e.g. transfer.checkpoint=361 (a step number) on the command line
        try:
            node[leaf] = value
        except (TypeError, ValueError) as e:
            raise ConfigError(f'config key {key!r}: {value!r} does not fit ({e})') from None
    return config


# ---------------------------------------------------------------------------------------------------- durations


@dataclasses.dataclass(frozen=True)
class Duration:
    amount: int
    unit: str  # 'steps' | 'epochs'

    def in_steps(self, steps_per_epoch: int) -> int:
        return self.amount * steps_per_epoch if self.unit == 'epochs' else self.amount


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every duration of a run in steps, resolved once the epoch length is known: what the loop, the schedule and
    environment.json read (none of them parses a duration again)."""

    steps_per_epoch: int
    total_steps: int
    validate_every: int
    log_every: int
    checkpoint_every: int
    warmup_steps: int  # optimizer.schedule.warmup
    drop_every_steps: int  # optimizer.schedule.drop_every (piecewise)
    eval_every: int  # eval.every (the extra splits' evaluators)

    @classmethod
    def resolve(cls, config: ConfigDict, steps_per_epoch: int) -> Plan:
        steps = lambda key, text: parse_duration(text, key).in_steps(steps_per_epoch)
        train = lambda key: max(steps(f'train.{key}', config.train[key]), 1)
        schedule = config.optimizer.schedule
        eval_every = max(steps('eval.every', config.eval.every), 1) if config.eval.every else train('validate_every')
        return cls(
            steps_per_epoch,
            train('duration'),
            train('validate_every'),
            train('log_every'),
            train('checkpoint_every'),
            steps('optimizer.schedule.warmup', schedule.warmup),
            max(steps('optimizer.schedule.drop_every', schedule.drop_every), 1),
            eval_every,
        )


def parse_duration(text: Any, key: str) -> Duration:
    if isinstance(text, int) and not isinstance(text, bool):
        return Duration(text, 'steps')
    found = re.fullmatch(r'\s*(\d+)\s*(steps?|epochs?)\s*', str(text))
    if not found:
        raise ConfigError(f'config key {key!r}: {text!r} is not a duration; write e.g. "30 epochs" or "500 steps"')
    unit = 'epochs' if found.group(2).startswith('epoch') else 'steps'
    return Duration(int(found.group(1)), unit)


# ---------------------------------------------------------------------------------------------------- validation


def _check_eval(config: ConfigDict) -> None:
    """eval.splits: split names, none of them the splits the run already scores, and never the test split."""
    d, e = config.dataset, config.eval
    _require(
        isinstance(e.splits, (tuple, list)) and all(isinstance(s, str) and s for s in e.splits),
        'eval.splits',
        f"must be split names, e.g. ('train[:1000]',); got {e.splits!r}",
    )
    for split in e.splits:
        _require(
            split != d.test_split,
            'eval.splits',
            f'{split!r} is the test split, which is scored once, after '
            f'training, on the selected model: never while training',
        )
        _require(
            split not in (d.validation_split, 'train', 'validation', 'test'),
            'eval.splits',
            f'{split!r} is scored already or names another row of metrics.jsonl; for the whole training '
            f"split write 'train[:100%]'",
        )
    _require(len(set(e.splits)) == len(e.splits), 'eval.splits', f'lists a split twice: {e.splits!r}')
    if e.every:
        _require(parse_duration(e.every, 'eval.every').amount > 0, 'eval.every', 'must be positive')


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f'config key {key!r}: {message}')


def _choice(config: ConfigDict, key: str, valid: Iterable[str]) -> None:
    value = config
    for part in key.split('.'):
        value = value[part]
    if value not in valid:
        close = difflib.get_close_matches(str(value), list(valid), n=1)
        hint = f' (did you mean {close[0]!r}?)' if close else ''
        raise ConfigError(f'config key {key!r}: unknown value {value!r}{hint}; valid: {", ".join(sorted(valid))}')


def _check_structure(config: ConfigDict) -> None:
    """Every key of the defaults is present, and each value has its default's type (ints for floats allowed)."""
    if not isinstance(config, ConfigDict):
        raise ConfigError(f'a config must be an ml_collections ConfigDict, got {type(config).__name__}')
    defaults = default_config()
    present = set(all_keys(config))
    missing = [k for k in all_keys(defaults) if k not in present]
    if missing:
        raise ConfigError(
            f'config is missing {", ".join(map(repr, missing[:5]))}: build experiment configs from '
            f'jaxdl.config.default_config() and change what differs'
        )
    numbers = (int, float)
    for key, default in flatten(defaults.to_dict()).items():
        value = config
        for part in key.split('.'):
            value = value[part]
        if default is None or key == 'optimizer.learning_rate':
            continue
        if isinstance(default, bool) or isinstance(value, bool):
            ok = isinstance(value, bool) == isinstance(default, bool)
        elif isinstance(default, float):
            ok = isinstance(value, numbers)
        else:
            ok = isinstance(value, type(default))
        _require(ok, key, f'must be a {type(default).__name__} like its default {default!r}, got {value!r}')
        if isinstance(value, float):
            _require(math.isfinite(value), key, f'must be a finite number, got {value!r}')


def validate(config: ConfigDict) -> ConfigDict:
    """Checks every value a run depends on, before any data or device is touched. The model's and the task's
    options are checked by their own constructors when the run builds them (jaxdl.models, jaxdl.tasks)."""
    from jaxdl import registry

    _check_structure(config)
    registry.TASKS.import_path(config.task.name)
    registry.MODELS.import_path(config.model.name)
    _choice(config, 'optimizer.name', registry.OPTIMIZERS)
    _choice(config, 'optimizer.schedule.name', registry.SCHEDULES)
    if not registry.is_import_path(config.train.parallel):  # a runner of the user's own: 'package.module:build'
        _choice(config, 'train.parallel', ('auto', *registry.RUNNERS.builtin_names()))
    _choice(config, 'train.select', ('best', 'best_ema', 'last'))
    _choice(config, 'train.on_nonfinite', ('stop', 'skip'))
    _choice(config, 'train.cpu_convolutions', registry.CPU_CONVOLUTIONS)
    _choice(config, 'model.dtype', ('float32', 'bfloat16'))
    t = config.train
    for key in ('batch_size', 'eval_batch_size'):
        _require(isinstance(t[key], int) and t[key] > 0, f'train.{key}', f'must be a positive integer, got {t[key]!r}')
    for key in ('duration', 'validate_every', 'log_every', 'checkpoint_every'):
        duration = parse_duration(t[key], f'train.{key}')
        _require(duration.amount > 0, f'train.{key}', 'must be positive')
    parse_duration(config.optimizer.schedule.warmup, 'optimizer.schedule.warmup')
    _require(
        parse_duration(config.optimizer.schedule.drop_every, 'optimizer.schedule.drop_every').amount > 0,
        'optimizer.schedule.drop_every',
        'must be positive',
    )
    _require(t.fsdp_min_size >= 1, 'train.fsdp_min_size', 'must be >= 1')
    for i, rule in enumerate(t.sharding_rules):
        _require(
            isinstance(rule, (tuple, list))
            and len(rule) == 2
            and isinstance(rule[0], str)
            and isinstance(rule[1], str),
            f'train.sharding_rules[{i}]',
            f"must be a (path regex, spec) pair, e.g. ('.*kernel', 'auto'); got {rule!r}",
        )
        require_regex(rule[0], f'train.sharding_rules[{i}]')
    _require(
        isinstance(t.mesh, str)
        and all(axis in ('data', 'fsdp') for axis in _mesh_axes(t.mesh))
        and all('=' in part for part in t.mesh.split(','))
        if t.mesh
        else True,
        'train.mesh',
        f"must name axis sizes as 'data=2,fsdp=4' (-1: the devices left); got {t.mesh!r}",
    )
    check_placement(t.parallel, t.mesh, t.sharding_rules, t.fsdp_min_size)
    _require(t.early_stopping.patience >= 0, 'train.early_stopping.patience', 'must be >= 0 (0 turns it off)')
    _check_eval(config)
    _check_instruments(config)
    o = config.optimizer
    _require(
        o.learning_rate is None or (isinstance(o.learning_rate, (int, float)) and o.learning_rate > 0),
        'optimizer.learning_rate',
        f'must be a positive number or None, got {o.learning_rate!r}',
    )
    _require(o.accumulate_steps >= 1, 'optimizer.accumulate_steps', 'must be >= 1')
    _require(
        0.0 <= o.layer_decay <= 1.0,
        'optimizer.layer_decay',
        f'must be in [0, 1] (0 = off; e.g. 0.75), got {o.layer_decay!r}',
    )
    _require(0.0 <= o.ema_decay < 1.0, 'optimizer.ema_decay', f'must be in [0, 1) (0 = no EMA), got {o.ema_decay!r}')
    _require(
        t.select != 'best_ema' or o.ema_decay > 0,
        'train.select',
        "'best_ema' selects by the EMA weights' validation loss: set optimizer.ema_decay (e.g. 0.999)",
    )
    _require(o.clip_global_norm >= 0, 'optimizer.clip_global_norm', 'must be >= 0 (0 turns it off)')
    _require(o.weight_decay >= 0, 'optimizer.weight_decay', 'must be >= 0')
    d = config.dataset
    _require(
        isinstance(d.name, str) and d.name != '', 'dataset.name', 'must name a dataset; `jaxdl datasets` lists them'
    )
    _require(bool(d.label), 'dataset.label', 'must name the feature holding the class')
    _require(d.image_size >= 0, 'dataset.image_size', 'must be >= 0 (0 keeps the dataset size)')
    _require(all(v != 0 for v in d.std), 'dataset.std', 'must not contain zero')
    _require(d.shuffle_buffer >= 0, 'dataset.shuffle_buffer', 'must be >= 0 (0 = the whole split)')
    _require(d.augment.crop_padding >= 0, 'dataset.augment.crop_padding', 'must be >= 0')
    _require(
        isinstance(d.augment.randaugment_layers, int) and d.augment.randaugment_layers >= 0,
        'dataset.augment.randaugment_layers',
        f'must be an int >= 0 (0 = off; e.g. 2), got {d.augment.randaugment_layers!r}',
    )
    _require(
        isinstance(d.augment.randaugment_magnitude, (int, float)) and 0 <= d.augment.randaugment_magnitude <= 10,
        'dataset.augment.randaugment_magnitude',
        f"must be in [0, 10] (timm's scale; e.g. 9), got {d.augment.randaugment_magnitude!r}",
    )
    for key in ('mixup_alpha', 'cutmix_alpha'):
        _require(
            isinstance(d.augment[key], (int, float)) and d.augment[key] >= 0,
            f'dataset.augment.{key}',
            f'must be >= 0 (0 = off; timm uses 0.8 for mixup, 1.0 for cutmix), got {d.augment[key]!r}',
        )
    for key in ('mix_switch_prob', 'mix_prob'):
        _require(
            isinstance(d.augment[key], (int, float)) and 0.0 <= d.augment[key] <= 1.0,
            f'dataset.augment.{key}',
            f'must be a probability in [0, 1], got {d.augment[key]!r}',
        )
    _require(0.0 < d.augment.crop_area <= 1.0, 'dataset.augment.crop_area', 'must be in (0, 1] (1 = no crop)')
    _require(
        d.source in ('auto', 'memory', 'stream'),
        'dataset.source',
        f"must be 'auto', 'memory' or 'stream', got {d.source!r}",
    )
    _require(d.memory_limit_mb > 0, 'dataset.memory_limit_mb', 'must be > 0')
    _require(0.0 <= d.center_crop <= 1.0, 'dataset.center_crop', 'must be in [0, 1] (0 = no crop)')
    scale, ratio = tuple(d.augment.crop_scale), tuple(d.augment.crop_ratio)
    _require(
        len(scale) == 2 and 0.0 < scale[0] <= scale[1] <= 1.0,
        'dataset.augment.crop_scale',
        f'must be (low, high) with 0 < low <= high <= 1, got {scale!r}',
    )
    _require(
        len(ratio) == 2 and 0.0 < ratio[0] <= ratio[1],
        'dataset.augment.crop_ratio',
        f'must be (low, high) with 0 < low <= high, got {ratio!r}',
    )
    _require(
        not ((d.augment.random_resized_crop or d.center_crop) and not d.image_size),
        'dataset.image_size',
        'must be set with augment.random_resized_crop or center_crop (the size the crop is resized to)',
    )
    fractions = d.split_fractions
    _require(
        len(fractions) == 3
        and all(isinstance(f, (int, float)) and f >= 0 for f in fractions)
        and abs(sum(fractions) - 1.0) < 1e-6
        and fractions[0] > 0,
        'dataset.split_fractions',
        f'must be three shares (train, validation, test) >= 0 summing to 1, train > 0; got {tuple(fractions)!r}',
    )
    for key in ('momentum', 'rmsprop_decay', 'b1', 'b2'):
        _require(0.0 <= o[key] < 1.0, f'optimizer.{key}', f'must be in [0, 1), got {o[key]!r}')
    _require(o.eps > 0, 'optimizer.eps', 'must be positive')
    _require(o.schedule.drop_factor > 0, 'optimizer.schedule.drop_factor', 'must be positive')
    _require(0.0 <= o.schedule.final_fraction <= 1.0, 'optimizer.schedule.final_fraction', 'must be in [0, 1]')
    _require(t.early_stopping.min_delta >= 0, 'train.early_stopping.min_delta', 'must be >= 0')
    _require(len(d.mean) > 0 and len(d.std) > 0, 'dataset.mean', 'mean and std need at least one value')
    _validate_transfer(config)
    return config


def _check_instruments(config: ConfigDict) -> None:
    from jaxdl import registry

    t = config.train
    _require(
        isinstance(t.trackers, (tuple, list)),
        'train.trackers',
        f"must be a tuple of tracker names, e.g. ('tensorboard', 'wandb'); got {t.trackers!r}",
    )
    for name in t.trackers:
        registry.TRACKERS.import_path(name)
    _require(
        isinstance(t.hooks, (tuple, list)) and all(registry.is_import_path(h) for h in t.hooks),
        'train.hooks',
        f"must be a tuple of import paths 'package.module:Name' of hooks; got {t.hooks!r}",
    )
    parse_profile_window(t.profile)
    _require(t.peak_tflops >= 0, 'train.peak_tflops', 'must be >= 0 (0 = from the table of known devices)')


def parse_profile_window(text: str) -> tuple[int, int] | None:
    """`train.profile`: 'steps A-B' (1 <= A < B, both traced) -> (A, B); '' -> None."""
    if text == '':
        return None
    match = re.fullmatch(r'\s*steps\s+(\d+)\s*-\s*(\d+)\s*', text) if isinstance(text, str) else None
    if not match or not 1 <= int(match[1]) < int(match[2]):
        raise ConfigError(
            f"config key 'train.profile': must be 'steps A-B' with 1 <= A < B (e.g. 'steps 20-25'), "
            f"or '' for no trace; got {text!r}"
        )
    return int(match[1]), int(match[2])


def check_placement(parallel: str, mesh: str, sharding_rules: Sequence, fsdp_min_size: int) -> None:
    """A placement setting the chosen runner cannot use is an error, never ignored: only 'sharded' and 'fsdp' run
    over a mesh, and only 'fsdp' splits the state ('auto' picks the runner these settings need)."""
    if mesh and parallel in ('jit', 'pmap'):
        raise ConfigError(
            f"config key 'train.mesh': {mesh!r} needs a runner over a mesh, and train.parallel="
            f"{parallel!r} has none; set train.parallel to 'sharded' or 'fsdp' (or 'auto', which then "
            f'picks one), or leave train.mesh empty'
        )
    if parallel == 'fsdp' and mesh and 'fsdp' not in _mesh_axes(mesh):
        raise ConfigError(
            f"config key 'train.mesh': {mesh!r} has no fsdp axis, so train.parallel='fsdp' would split "
            f"nothing; add one (e.g. 'data=2,fsdp=-1'), or use train.parallel='sharded'"
        )
    for key in state_splitting_keys(sharding_rules, fsdp_min_size):
        if parallel in ('jit', 'pmap', 'sharded'):
            raise ConfigError(
                f"config key {key!r}: only train.parallel='fsdp' splits the state, and "
                f"train.parallel={parallel!r} keeps it whole; set train.parallel to 'fsdp' (or 'auto', "
                f'which then picks it), or leave {key} at its default'
            )


def state_splitting_keys(sharding_rules: Sequence, fsdp_min_size: int) -> list[str]:
    """The placement keys set to split the state, which only the fsdp runner does."""
    return [
        key
        for key, given in (
            ('train.sharding_rules', bool(sharding_rules)),
            ('train.fsdp_min_size', fsdp_min_size != FSDP_MIN_SIZE),
        )
        if given
    ]


def _mesh_axes(mesh: str) -> list[str]:
    return [part.partition('=')[0].strip() for part in mesh.split(',')]


def require_regex(pattern: str, key: str) -> None:
    """A pattern that does not compile is named with the reason `re` gives and where in the pattern it is."""
    try:
        re.compile(pattern)
    except re.error as e:
        where = f' at position {e.pos}' if e.pos is not None else ''
        raise ConfigError(
            f'config key {key!r}: the regular expression {pattern!r} does not compile: {e.msg}{where}'
            f' (escape a literal character with a backslash, e.g. {re.escape(pattern)!r})'
        ) from None


def _validate_transfer(config: ConfigDict) -> None:
    from jaxdl.registry import WEIGHTS

    _choice(config, 'transfer.weights', WEIGHTS)
    d, o, t = config.dataset, config.optimizer, config.transfer
    _require(
        all(isinstance(c, int) and c >= 0 for c in d.classes) and len(set(d.classes)) == len(d.classes),
        'dataset.classes',
        f'must be distinct class ids (integers >= 0), got {d.classes!r}',
    )
    _require(d.train_examples_per_class >= 0, 'dataset.train_examples_per_class', 'must be >= 0 (0 = all)')
    for i, group in enumerate(o.groups):
        ok = (
            isinstance(group, (tuple, list))
            and len(group) == 2
            and isinstance(group[0], str)
            and isinstance(group[1], (int, float))
            and not isinstance(group[1], bool)
            and group[1] >= 0
        )
        _require(
            ok,
            f'optimizer.groups[{i}]',
            f"must be a (path regex, learning-rate multiplier >= 0) pair, e.g. ('backbone', 0.1); got {group!r}",
        )
        require_regex(group[0], f'optimizer.groups[{i}]')
    for i, pattern in enumerate(t.reinitialize):
        _require(isinstance(pattern, str), f'transfer.reinitialize[{i}]', f'must be a path regex, got {pattern!r}')
        require_regex(pattern, f'transfer.reinitialize[{i}]')
    _require(
        t.checkpoint in ('best', 'latest') or str(t.checkpoint).isdigit(),
        'transfer.checkpoint',
        f"must be 'best', 'latest' or a step number, got {t.checkpoint!r}",
    )
    _require(
        not t.compare_with_scratch or bool(t.init_from),
        'transfer.compare_with_scratch',
        'compares a fine-tuned run with one from scratch, so it needs transfer.init_from',
    )


def to_json(config: ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)
