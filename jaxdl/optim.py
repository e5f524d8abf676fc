"""The one place that turns the `optimizer` config into an optax chain and its learning-rate schedule.

Chain order: clip by global norm -> (L2 weight decay) -> optimizer scaling with the scheduled learning rate,
wrapped in optax.MultiSteps when gradients are accumulated. AdamW's weight decay is decoupled (inside adamw).
"""
from __future__ import annotations

import difflib

import jax
import optax

from jaxdl.config import ConfigError, parse_duration

OPTIMIZERS = ('sgd', 'rmsprop', 'adam', 'adamw')
SCHEDULES = ('constant', 'piecewise', 'cosine')
DEFAULT_LEARNING_RATES = {'sgd': 0.05, 'rmsprop': 1e-3, 'adam': 1e-3, 'adamw': 1e-3}


def _check_name(kind: str, name: str, valid) -> None:
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f' (did you mean {close[0]!r}?)' if close else ''
        raise ConfigError(f'unknown {kind} {name!r}{hint}; valid: {", ".join(valid)}')


def learning_rate(opt_cfg) -> float:
    return float(opt_cfg.learning_rate if opt_cfg.learning_rate is not None else DEFAULT_LEARNING_RATES[opt_cfg.name])


def build_schedule(opt_cfg, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """Learning rate against *optimizer* updates (with accumulation, one update per `accumulate_steps` steps)."""
    s = opt_cfg.schedule
    _check_name('schedule', s.name, SCHEDULES)
    per_update = max(opt_cfg.accumulate_steps, 1)
    to_updates = lambda steps: max(steps // per_update, 0)
    peak = learning_rate(opt_cfg)
    warmup = to_updates(parse_duration(s.warmup, 'optimizer.schedule.warmup').in_steps(steps_per_epoch))
    decay_updates = max(to_updates(total_steps) - warmup, 1)
    if s.name == 'constant':
        main = optax.constant_schedule(peak)
    elif s.name == 'piecewise':
        every = max(to_updates(parse_duration(s.drop_every, 'optimizer.schedule.drop_every').in_steps(steps_per_epoch)), 1)
        main = optax.exponential_decay(peak, transition_steps=every, decay_rate=s.drop_factor, staircase=True)
    else:  # cosine
        main = optax.cosine_decay_schedule(peak, decay_steps=decay_updates, alpha=s.final_fraction)
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], boundaries=[warmup])


def _decay_mask(params):
    """Weight decay on kernels only: biases and normalisation scales/offsets (ndim <= 1) are left alone."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def build_optimizer(opt_cfg, steps_per_epoch: int, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Returns (the optax chain, its schedule as a function of the train step)."""
    _check_name('optimizer', opt_cfg.name, OPTIMIZERS)
    schedule = build_schedule(opt_cfg, steps_per_epoch, total_steps)
    name, parts = opt_cfg.name, []
    if opt_cfg.clip_global_norm:
        parts.append(optax.clip_by_global_norm(opt_cfg.clip_global_norm))
    if opt_cfg.weight_decay and name != 'adamw':
        parts.append(optax.add_decayed_weights(opt_cfg.weight_decay, mask=_decay_mask))
    if name == 'sgd':
        parts.append(optax.sgd(schedule, momentum=opt_cfg.momentum or None, nesterov=opt_cfg.nesterov))
    elif name == 'rmsprop':
        # Plain RMSProp (no momentum): Adam is the one that adds momentum to RMSProp-style scaling.
        parts.append(optax.rmsprop(schedule, decay=opt_cfg.rmsprop_decay, eps=opt_cfg.eps))
    elif name == 'adam':
        parts.append(optax.adam(schedule, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps, nesterov=opt_cfg.nesterov))
    else:
        parts.append(optax.adamw(schedule, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps,
                                 weight_decay=opt_cfg.weight_decay, mask=_decay_mask, nesterov=opt_cfg.nesterov))
    tx = optax.chain(*parts)
    if opt_cfg.accumulate_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=opt_cfg.accumulate_steps)
        per_update = opt_cfg.accumulate_steps
        return tx, lambda step: schedule(step // per_update)
    return tx, schedule
