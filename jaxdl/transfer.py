"""Transfer learning: start a new run from the weights of another run's checkpoint.

The new model is built and initialised as usual; then every parameter and model-state leaf (e.g. BatchNorm
statistics) whose path matches none of `transfer.reinitialize` is taken from the source, which must hold the
same path with the same shape, except a ViT's `position_embedding`, which is resized to the new image size's
token grid (`jaxdl.models.vit.resize_position_embedding`). Anything else is a mismatch and an error that names each
path and both shapes,
raised before any training step: a fine-tuning run never starts from a half-loaded backbone. The re-initialised
paths (by default the head: a new task's head is freshly initialised) are reported, as is every source leaf the
new model does not use. The optimizer state, step and RNG are the new run's own.

The source is a run's workdir (its `best`, `latest` or numbered checkpoint), one checkpoint step directory, or
the `state` item directory inside it: plain orbax, read without the source's config. Or it is a torchvision or
timm network's weights (`.safetensors`, `.pth`; see jaxdl.weights), mapped onto jaxdl's `resnet` or `vit`;
`import_weights` builds such a network as a jaxdl module and its variables, outside any run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from jaxdl.errors import CheckpointError, TransferError
from jaxdl.logging import display_path
from jaxdl.parameter_paths import flat_paths, parameter_path, path_matches

COLLECTION_PARAMS = 'params'
ACCEPTED_SOURCES = (
    "a trained run's workdir, one of its checkpoint step directories (checkpoints/STEP) or that "
    "step's state directory, or a torchvision/timm weights file (.safetensors or .pth)"
)


def _resizers() -> dict:
    """Leaf name -> f(source_leaf, new_shape) -> the leaf for the new model, or None where it cannot fit."""
    from jaxdl.models.vit import resize_position_embedding

    return {
        'position_embedding': lambda leaf, shape: resize_position_embedding(leaf, shape[1]) if len(shape) == 3 else None
    }


@dataclasses.dataclass(frozen=True)
class Source:
    path: Path  # what transfer.init_from names
    state_dir: Path  # the orbax item directory holding the saved TrainState tree
    step: int | None  # the source run's step, when known


def resolve_source(init_from: str, which: str = 'best') -> Source:
    """Finds the checkpoint `init_from` names, or says precisely why there is none."""
    from jaxdl.checkpoint import Checkpoints

    path = Path(init_from).absolute()
    if not path.exists():
        raise TransferError(
            f'transfer.init_from: {path} does not exist. It takes {ACCEPTED_SOURCES}; train the '
            f'source first or fix the path.'
        )
    if not path.is_dir():
        raise TransferError(
            f'transfer.init_from: {path} is a file that is not a weights file; it takes {ACCEPTED_SOURCES}.'
        )
    if (path / 'state' / '_METADATA').is_file():  # a step directory: checkpoints/STEP
        return Source(path, path / 'state', int(path.name) if path.name.isdigit() else None)
    if (path / '_METADATA').is_file():  # the state item itself
        parent = path.parent.name
        return Source(path, path, int(parent) if parent.isdigit() else None)
    directory = path / 'checkpoints' if (path / 'checkpoints').is_dir() else path
    if not any(p.name.isdigit() for p in directory.iterdir()):
        raise TransferError(
            f'transfer.init_from: {path} holds no checkpoint (expected a run workdir with '
            f'checkpoints/, or a checkpoint step directory); has the source run trained yet?'
        )
    checkpoints = Checkpoints(directory, read_only=True)
    try:
        step = checkpoints.resolve(which)
    except CheckpointError as e:
        raise TransferError(f'transfer.init_from: {e}') from None
    finally:
        checkpoints.close()
    return Source(path, directory / str(step) / 'state', step)


def load_source_tree(source: Source) -> dict:
    """The saved TrainState tree ({'params', 'model_state', ...}) as host arrays, read from orbax metadata alone."""
    import orbax.checkpoint as ocp

    checkpointer = ocp.StandardCheckpointer()
    try:
        metadata = checkpointer.metadata(source.state_dir)
        metadata = getattr(metadata, 'item_metadata', metadata)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), dict(metadata))
        return checkpointer.restore(source.state_dir, abstract)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise TransferError(f'transfer.init_from: cannot read the checkpoint in {source.state_dir}: {e}') from None
    finally:
        checkpointer.close()


@dataclasses.dataclass
class TransferReport:
    source: str
    step: int | None
    loaded: list[str]
    reinitialized: list[str]
    unused_in_source: list[str]
    resized: list[str] = dataclasses.field(default_factory=list)  # loaded, resized to the new model's shape

    def as_record(self) -> dict:
        return {
            'source': self.source,
            'step': self.step,
            'loaded': len(self.loaded),
            'reinitialized': self.reinitialized,
            'unused_in_source': self.unused_in_source,
            'resized': self.resized,
        }

    def describe(self) -> str:
        text = (
            f'initialised from {display_path(self.source)}'
            + (f' (step {self.step})' if self.step is not None else '')
            + f': {len(self.loaded)} arrays loaded, {len(self.reinitialized)} freshly initialised'
        )
        if self.reinitialized:
            text += ' (' + ', '.join(self.reinitialized) + ')'
        if self.resized:
            text += f'; resized to the new shape: {", ".join(self.resized)}'
        if self.unused_in_source:
            text += f'; not used from the source: {_summarised(self.unused_in_source)}'
        return text


def _summarised(paths: list[str], at_most: int = 6) -> str:
    """The paths themselves, or, when there are many (a segmentation decoder), their modules with counts."""
    if len(paths) <= at_most:
        return ', '.join(paths)
    counts: dict[str, int] = {}
    for path in paths:
        module = _module_of(path, head_whole=False)
        counts[module] = counts.get(module, 0) + 1
    return ', '.join(f'{m} ({n} arrays)' for m, n in counts.items())


def transfer_variables(new: dict, source: dict, reinitialize) -> tuple[dict, TransferReport]:
    """`new` and `source`: {'params': ..., 'model_state': ...} trees. Returns `new` with every leaf not matched
    by `reinitialize` replaced by the source's, or raises TransferError naming every mismatch."""
    flat_new, flat_source = flat_paths(new), flat_paths(source)

    def fresh(path: str) -> bool:  # patterns name module paths: 'head' covers its params and its batch_stats
        parts = path.split('/')
        module_path = '/'.join(parts[1:] if parts[0] == COLLECTION_PARAMS else parts[2:])
        return any(path_matches(p, module_path) for p in reinitialize)

    loaded, reinitialized, resized, problems = [], [], {}, []
    resizers = _resizers()
    for path, leaf in flat_new.items():
        if fresh(path):
            reinitialized.append(path)
        elif path not in flat_source:
            problems.append(f'{path} {tuple(np.shape(leaf))}: not in the source')
        elif np.shape(flat_source[path]) != np.shape(leaf):
            resize = resizers.get(path.rsplit('/', 1)[-1])
            fitted = resize(flat_source[path], np.shape(leaf)) if resize else None
            if fitted is not None and np.shape(fitted) == np.shape(leaf):
                resized[path] = fitted
                loaded.append(path)
            else:
                problems.append(
                    f'{path}: the new model has {tuple(np.shape(leaf))}, the source '
                    f'{tuple(np.shape(flat_source[path]))}'
                )
        else:
            loaded.append(path)
    absent = [p for p in flat_source if p not in flat_new]  # allowed only where re-initialisation is expected
    problems += [
        f'{p} {tuple(np.shape(flat_source[p]))}: in the source, not in the new model' for p in absent if not fresh(p)
    ]
    if problems:
        accepting = sorted({_module_of(p.split(' ')[0].rstrip(':')) for p in problems})
        raise TransferError(
            'the pretrained source does not fit the new model (paths as collection/module/'
            'parameter):\n  ' + '\n  '.join(problems) + '\nTo initialise these freshly '
            'instead of loading them, list them in transfer.reinitialize, e.g. '
            f'transfer.reinitialize = {tuple(accepting)!r}'
        )
    take = {path: np.asarray(resized.get(path, flat_source[path])).astype(flat_new[path].dtype) for path in loaded}
    tree = jax.tree_util.tree_map_with_path(lambda path, leaf: take.get(parameter_path(path), leaf), new)
    return tree, TransferReport('', None, loaded, reinitialized, absent, list(resized))


def _module_of(path: str, head_whole: bool = True) -> str:
    """'params/backbone/ResidualBlock_7/Conv_0/kernel' -> 'backbone/ResidualBlock_7': a reinitialize entry (the
    head as a whole, unless `head_whole` is False)."""
    parts = path.split('/')
    parts = parts[1:] if parts[0] == COLLECTION_PARAMS else parts[2:]
    return 'head' if head_whole and parts and parts[0] == 'head' else '/'.join(parts[:2])


def imported_tree(path: str, model_cfg, module, state: dict | None = None) -> dict:
    """A torchvision/timm weights file (or its `state` dict, already read) as a {'params', 'model_state'} tree in
    `module`'s layout, by the `TORCH_NAMES` of the model's module (jaxdl.weights.to_jaxdl); names the mapping does not know are an error (the file is not the architecture named)."""
    from jaxdl import weights

    state = weights.read_state_dict(path) if state is None else state
    tree, unmapped = weights.to_jaxdl(state, model_cfg.name, module)
    if unmapped:
        shown = ', '.join(f'{k} {tuple(state[k].shape)}' for k in unmapped[:12])
        more = f' and {len(unmapped) - 12} more' if len(unmapped) > 12 else ''
        raise TransferError(
            f'{path}: {len(unmapped)} tensor(s) are not part of a torchvision/timm '
            f'{model_cfg.name} as jaxdl maps it: {shown}{more}. '
            f'{weights.describe_architecture(state)}'
        )
    return tree


def initialize_from(state, transfer_cfg, model_cfg):
    """The state with the source's weights in place (optimizer state, step and RNG stay the new run's)."""
    from jaxdl.weights import is_weights_file

    if is_weights_file(transfer_cfg.init_from):
        source = Source(Path(transfer_cfg.init_from).absolute(), Path(transfer_cfg.init_from).absolute(), None)
        if not source.path.is_file():
            raise TransferError(f'transfer.init_from: {source.path} does not exist')
        tree = imported_tree(str(source.path), model_cfg, state.apply_fn.module)
    else:
        source = resolve_source(transfer_cfg.init_from, transfer_cfg.checkpoint)
        tree = load_source_tree(source)
        missing = [k for k in (COLLECTION_PARAMS, 'model_state') if k not in tree]
        if missing:
            raise TransferError(
                f'transfer.init_from: {source.state_dir} is not a jaxdl TrainState checkpoint '
                f'(no {" or ".join(missing)})'
            )
        if transfer_cfg.weights == 'ema':
            if 'ema' not in tree:
                raise TransferError(
                    f"transfer.weights='ema': the run in {source.path} was trained without an EMA of "
                    f"its weights (optimizer.ema_decay = 0); use transfer.weights='raw'"
                )
            tree = tree['ema']
    new = {COLLECTION_PARAMS: state.params, 'model_state': state.model_state}
    variables, report = transfer_variables(
        new, {COLLECTION_PARAMS: tree[COLLECTION_PARAMS], 'model_state': tree['model_state']}, transfer_cfg.reinitialize
    )
    report = dataclasses.replace(report, source=str(source.path), step=source.step)
    return state.replace(params=variables[COLLECTION_PARAMS], model_state=variables['model_state']), report


def _source_outputs(tree: dict) -> int | None:
    """The width of the mapped source's classifier (a dense head's kernel [in, out]), or None without one."""
    kernel = tree[COLLECTION_PARAMS].get('head', {}).get('Dense_0', {}).get('kernel')
    return None if kernel is None else int(np.shape(kernel)[-1])


def _source_image_size(state: dict, module) -> int:
    """The image size a ViT's position embedding was learned for (its grid times the patch); 224 for a ResNet."""
    backbone = module.backbone
    if 'pos_embed' in state and hasattr(backbone, 'patch'):
        tokens = state['pos_embed'].shape[1] - (1 if backbone.pool == 'cls' else 0)
        side = int(round(tokens**0.5))
        if side * side == tokens:
            return side * backbone.patch
    return 224


def import_weights(
    path: str, model_cfg, num_outputs: int | None = None, *, seed: int = 0, image_size: int | None = None
):
    """(module, variables) of a torchvision/timm network's weights as a jaxdl model:
    `module.apply(variables, images_nhwc, train=False)` gives the source network's logits (images normalised as
    the source expects). `model_cfg`: a `model` config ({'name': 'resnet', 'options': {'depth': 50}} or a
    ConfigDict). `num_outputs`: None keeps the source's classifier; another number gets a fresh head (seeded).
    `image_size`: a ViT's position embedding is resized to it (default: the size it was trained at)."""
    import jax
    import jax.numpy as jnp

    from jaxdl import weights
    from jaxdl.config import default_config
    from jaxdl.models import build_model

    cfg = default_config().model
    for key, value in model_cfg.items() if hasattr(model_cfg, 'items') else ():
        if key == 'options':
            cfg.options.update(dict(value))
        else:
            setattr(cfg, key, value)
    state = weights.read_state_dict(path)
    # The mapping reads the backbone's settings (a ViT's heads), never the head's width: the head is sized after.
    tree = imported_tree(path, cfg, build_model(cfg, num_outputs or 1, {'head': 'dense'}), state)
    source_outputs = _source_outputs(tree)
    module = build_model(cfg, num_outputs or source_outputs or 1, {'head': 'dense'})
    if num_outputs is None and source_outputs is None:
        raise TransferError(f'{path} has no classifier head; pass num_outputs for a fresh one')
    size = image_size or _source_image_size(state, module)
    reinitialize = ('head',) if num_outputs is not None and num_outputs != source_outputs else ()
    init = lambda key: module.init(key, jnp.zeros((1, size, size, 3)), train=False)
    # Only a fresh head needs initial values; otherwise the shapes alone are compared (no compiled init).
    variables = (
        jax.jit(init)(jax.random.PRNGKey(seed)) if reinitialize else jax.eval_shape(init, jax.random.PRNGKey(seed))
    )
    new = {
        COLLECTION_PARAMS: variables[COLLECTION_PARAMS],
        'model_state': {k: v for k, v in variables.items() if k != COLLECTION_PARAMS},
    }
    loaded, _ = transfer_variables(new, tree, reinitialize)
    return module, {COLLECTION_PARAMS: loaded[COLLECTION_PARAMS], **loaded['model_state']}


def scratch_baseline_config(config):
    """The same run from scratch: no source, every parameter at the full rate, BatchNorm statistics updated."""
    import copy

    baseline = copy.deepcopy(config)
    baseline.transfer.init_from = ''
    baseline.transfer.compare_with_scratch = False
    baseline.optimizer.groups = ()
    baseline.model.freeze_batch_norm = False
    return baseline
