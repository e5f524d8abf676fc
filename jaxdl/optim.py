"""The one place that turns the `optimizer` config into an optax chain and its learning-rate schedule.

Chain order: (zero the frozen groups' gradients) -> clip by global norm -> (L2 weight decay) -> the optimizer's
scaling with the scheduled learning rate -> (each parameter's learning-rate multiplier); wrapped in
optax.MultiSteps when gradients are accumulated. AdamW's weight decay is decoupled (inside adamw).

The multipliers, as big_vision does it: the chain's structure, and so the optimizer state a checkpoint holds, is
the same whatever the grouping; scaling an update by m after the optimizer is the optimizer run at m times the
rate (sgd's momentum, adam's moments and adamw's decoupled decay all scale with the rate).
- Parameter groups (`optimizer.groups`, for fine-tuning): (path pattern, multiplier) pairs, matched as
  `jaxdl.parameter_paths` says ('backbone' and 'backbone/.*' both select the backbone). Multiplier 0 freezes the
  group: its gradients are zeroed before clipping and its updates are exactly zero. Parameters no pattern matches
  train at the full rate.
- Layer-wise learning-rate decay (`optimizer.layer_decay`, BEiT and timm's ViT fine-tuning): a parameter of layer
  i of L (the model's `LAYER_INDEX`, e.g. a ViT's embeddings 0, block k k + 1, its final norm and head L - 1)
  trains at layer_decay ** (L - 1 - i) of the rate, times its group's multiplier.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import optax

from jaxdl import parameter_paths
from jaxdl.config import ConfigDict, ConfigError, Plan
from jaxdl.registry import OPTIMIZERS, SCHEDULES

DEFAULT_LEARNING_RATES = {'sgd': 0.05, 'rmsprop': 1e-3, 'adam': 1e-3, 'adamw': 1e-3}


def _check_name(kind: str, name: str, valid: Iterable[str]) -> None:
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f' (did you mean {close[0]!r}?)' if close else ''
        raise ConfigError(f'unknown {kind} {name!r}{hint}; valid: {", ".join(valid)}')


def learning_rate(opt_cfg: ConfigDict) -> float:
    return float(opt_cfg.learning_rate if opt_cfg.learning_rate is not None else DEFAULT_LEARNING_RATES[opt_cfg.name])


def build_schedule(opt_cfg: ConfigDict, plan: Plan) -> optax.Schedule:
    """Learning rate against *optimizer* updates (with accumulation, one update per `accumulate_steps` steps); the
    durations come from the run's plan, in steps."""
    s = opt_cfg.schedule
    _check_name('schedule', s.name, SCHEDULES)
    per_update = max(opt_cfg.accumulate_steps, 1)
    to_updates = lambda steps: max(steps // per_update, 0)
    peak = learning_rate(opt_cfg)
    warmup = to_updates(plan.warmup_steps)
    decay_updates = max(to_updates(plan.total_steps) - warmup, 1)
    if s.name == 'constant':
        main = optax.constant_schedule(peak)
    elif s.name == 'piecewise':
        every = max(to_updates(plan.drop_every_steps), 1)
        main = optax.exponential_decay(peak, transition_steps=every, decay_rate=s.drop_factor, staircase=True)
    else:  # cosine
        main = optax.cosine_decay_schedule(peak, decay_steps=decay_updates, alpha=s.final_fraction)
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], boundaries=[warmup])


def _decay_mask(params: Any) -> Any:
    """Weight decay on kernels only: biases and normalisation scales/offsets (ndim <= 1) are left alone."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def group_multipliers(groups: Sequence[tuple[str, float]]) -> Callable:
    """params -> a tree of each parameter's group multiplier: that of the first pattern matching its path, 1.0
    where none matches (0.0 freezes).

    A pattern that selects no parameter at all is an error: it is almost always a typo."""
    groups = [(str(p), float(m)) for p, m in groups]

    def of(params: Any) -> Any:
        used: set[str] = set()
        tree = parameter_paths.map_by_first_match(
            lambda path, leaf, i: 1.0 if i is None else groups[i][1], params, [p for p, _ in groups], used=used
        )
        unused = [groups[i][0] for i in range(len(groups)) if i not in used]
        if unused:
            raise ConfigError(
                f'optimizer.groups: pattern(s) {unused} match no parameter; paths look like '
                f'{parameter_paths.paths_look_like(params)} (see jaxdl.parameter_paths)'
            )
        return tree

    return of


def _scaled_step(opt_cfg: ConfigDict, learning_rate: Any) -> list[optax.GradientTransformation]:
    """(L2 weight decay ->) the optimizer's own scaling at `learning_rate` (a number or a schedule), as chain
    parts: without groups they go straight into the main chain, so its state keeps the structure checkpoints
    written before groups existed have."""
    name, parts = opt_cfg.name, []
    if opt_cfg.weight_decay and name != 'adamw':
        parts.append(optax.add_decayed_weights(opt_cfg.weight_decay, mask=_decay_mask))
    if name == 'sgd':
        parts.append(optax.sgd(learning_rate, momentum=opt_cfg.momentum or None, nesterov=opt_cfg.nesterov))
    elif name == 'rmsprop':
        # Plain RMSProp (no momentum): Adam is the one that adds momentum to RMSProp-style scaling.
        parts.append(optax.rmsprop(learning_rate, decay=opt_cfg.rmsprop_decay, eps=opt_cfg.eps))
    elif name == 'adam':
        parts.append(
            optax.adam(learning_rate, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps, nesterov=opt_cfg.nesterov)
        )
    else:
        parts.append(
            optax.adamw(
                learning_rate,
                b1=opt_cfg.b1,
                b2=opt_cfg.b2,
                eps=opt_cfg.eps,
                weight_decay=opt_cfg.weight_decay,
                mask=_decay_mask,
                nesterov=opt_cfg.nesterov,
            )
        )
    return parts


def multipliers(opt_cfg: ConfigDict, layer_index: Callable[[str], tuple[int, int]] | None = None) -> Callable | None:
    """params -> a tree of each parameter's learning-rate multiplier (its group's times its layer's decay), or None
    when every parameter trains at the full rate. `layer_index`: path -> (its layer, the number of layers), the
    model's `LAYER_INDEX`; needed with `optimizer.layer_decay`."""
    groups = [(str(p), float(m)) for p, m in opt_cfg.groups]
    decay = float(opt_cfg.layer_decay)
    if not groups and not decay:
        return None
    if decay and layer_index is None:
        raise ConfigError(
            "config key 'optimizer.layer_decay': this model has no layer index (a LAYER_INDEX in its "
            "module, as jaxdl's vit has); set optimizer.layer_decay = 0"
        )
    group_of = group_multipliers(groups)

    def of(params: Any) -> Any:
        group = group_of(params)

        def layered(path: str, leaf: Any, _: Any) -> float:
            assert layer_index is not None  # checked above whenever decay is set
            layer, layers = layer_index(path)
            return decay ** (layers - 1 - layer)

        layers = parameter_paths.map_by_first_match(layered, params, []) if decay else None
        return group if layers is None else jax.tree.map(lambda g, layer: g * layer, group, layers)

    return of


def scale_by_multipliers(multipliers_of: Callable) -> optax.GradientTransformation:
    """Each update times its parameter's multiplier (a constant tree, from the parameters' paths); no state."""

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        return jax.tree.map(lambda u, m: u * m, updates, multipliers_of(updates)), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def build_optimizer(
    opt_cfg: ConfigDict, plan: Plan, *, layer_index: Callable[[str], tuple[int, int]] | None = None
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Returns (the optax chain, its schedule as a function of the train step; the full rate, before any
    multiplier). `plan`: the run's durations in steps (`jaxdl.config.Plan.resolve`); `layer_index`: the model's
    `LAYER_INDEX` (`optimizer.layer_decay` needs one)."""
    _check_name('optimizer', opt_cfg.name, OPTIMIZERS)
    schedule = build_schedule(opt_cfg, plan)
    parts = []
    multipliers_of = multipliers(opt_cfg, layer_index)
    if multipliers_of is not None:
        # Frozen (multiplier 0) gradients are zeroed before clipping, so they do not count in the global norm.
        is_frozen = lambda params: jax.tree.map(lambda m: m == 0.0, multipliers_of(params))
        parts.append(optax.masked(optax.set_to_zero(), is_frozen))
    if opt_cfg.clip_global_norm:
        parts.append(optax.clip_by_global_norm(opt_cfg.clip_global_norm))
    parts.extend(_scaled_step(opt_cfg, schedule))
    if multipliers_of is not None:
        parts.append(scale_by_multipliers(multipliers_of))
    tx = optax.chain(*parts)
    if opt_cfg.accumulate_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=opt_cfg.accumulate_steps)
        per_update = opt_cfg.accumulate_steps
        return tx, lambda step: schedule(step // per_update)
    return tx, schedule
