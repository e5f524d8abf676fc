"""Where a run's arrays live: the device mesh (`train.mesh`) and which leaves of the state are split over which
mesh axis (`train.parallel='fsdp'`, `train.sharding_rules`).

The mesh has up to two axes, both carrying data: `data` (the state replicated along it) and `fsdp` (the state
split along it, each device holding its part of every large leaf, gathered by XLA where a step needs it). A
global batch is split over both, so every device sees its own rows. `train.mesh` names the sizes, e.g.
'data=2,fsdp=4' or 'fsdp=-1' (-1: the devices left); empty, it is 'data=-1' ('fsdp=-1' for fsdp).

Which leaves are split: `train.sharding_rules`, (path pattern, spec) pairs, the first that matches a leaf's path
applying (`jaxdl.parameter_paths`: 'backbone/Conv_0/kernel' for parameters, 'batch_stats/backbone/...' for model
state, as optimizer.groups and transfer.reinitialize write them). A spec is '' (replicated), 'auto' (the largest dimension that divides by
the fsdp axis), or one entry per dimension, each an axis name or empty ('fsdp,' splits dimension 0). Leaves no
rule matches get 'auto' when they hold at least `train.fsdp_min_size` numbers, else stay replicated. The
optimizer state follows its parameters (optax.tree_utils.tree_map_params); step and rng are replicated.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl import parameter_paths
from jaxdl.config import require_regex
from jaxdl.errors import ConfigError

AXES = ('data', 'fsdp')


def parse_mesh(spec: str) -> dict[str, int]:
    """'data=2,fsdp=-1' -> {'data': 2, 'fsdp': -1}: the axes named and their sizes as written."""
    text = spec.replace(' ', '')
    sizes = {}
    for part in text.split(','):
        name, equals, value = part.partition('=')
        if name not in AXES or not equals or name in sizes:
            raise ConfigError(
                f"config key 'train.mesh': {spec!r} must name each of the axes "
                f"{', '.join(AXES)} at most once, as 'data=2,fsdp=4' (-1: the devices left)"
            )
        try:
            sizes[name] = int(value)
        except ValueError:
            raise ConfigError(
                f"config key 'train.mesh': the size of axis {name!r} must be an integer, got {value!r}"
            ) from None
    return sizes


def mesh_sizes(spec: str, device_count: int, default: str) -> dict[str, int]:
    """'data=2,fsdp=4' -> {'data': 2, 'fsdp': 4}, checked against the device count."""
    sizes = parse_mesh(spec or default)
    free = [name for name, size in sizes.items() if size == -1]
    if len(free) > 1 or any(size == 0 or size < -1 for size in sizes.values()):
        raise ConfigError(f"config key 'train.mesh': {spec!r}: sizes must be positive, and at most one -1")
    fixed = math.prod(size for size in sizes.values() if size != -1)
    if free:
        if device_count % fixed:
            raise ConfigError(
                f"config key 'train.mesh': {spec!r}: the fixed axes ({fixed} devices) do not divide "
                f'the {device_count} devices'
            )
        sizes[free[0]] = device_count // fixed
    if math.prod(sizes.values()) != device_count:
        product = ' x '.join(f'{name} {size}' for name, size in sizes.items())
        raise ConfigError(
            f"config key 'train.mesh': {product} = {math.prod(sizes.values())} devices, but there are "
            f'{device_count}; make the sizes multiply to {device_count} (or write -1 for one of them)'
        )
    return sizes


def build_mesh(spec: str, default: str = 'data=-1') -> Mesh:
    """The mesh over every device (of every process), with explicitly typed axes: Auto, so XLA places what a
    sharding does not pin down (gathers, reductions)."""
    sizes = mesh_sizes(spec, jax.device_count(), default)
    return jax.make_mesh(tuple(sizes.values()), tuple(sizes), axis_types=(AxisType.Auto,) * len(sizes))


def data_axes(mesh: Mesh) -> tuple[str, ...]:
    return tuple(name for name in mesh.axis_names if name in AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """A batch's rows split over every data-carrying axis."""
    return NamedSharding(mesh, P(data_axes(mesh)))


def _spec(path: str, shape: tuple, spec: str, mesh: Mesh, origin: str) -> P:
    """A PartitionSpec for one leaf from a rule's spec string, checked against the leaf and the mesh."""
    sizes = dict(mesh.shape)
    if spec == '':
        return P()
    if spec == 'auto':
        parts = sizes.get('fsdp', 1)
        divisible = [d for d in sorted(range(len(shape)), key=lambda d: -shape[d]) if shape[d] % parts == 0]
        if parts == 1 or not divisible:
            return P()
        return P(*[('fsdp' if d == divisible[0] else None) for d in range(len(shape))])
    entries = [e.strip() or None for e in spec.split(',')]
    if len(entries) != len(shape):
        raise ConfigError(
            f"config key 'train.sharding_rules': {origin} gives {spec!r} ({len(entries)} dimensions) "
            f'for {path}, which has shape {tuple(shape)}'
        )
    for d, axis in enumerate(entries):
        if axis is None:
            continue
        if axis not in sizes:
            raise ConfigError(
                f"config key 'train.sharding_rules': {origin} names the axis {axis!r}, which the mesh "
                f'({", ".join(f"{k}={v}" for k, v in sizes.items())}) does not have'
            )
        if shape[d] % sizes[axis]:
            raise ConfigError(
                f"config key 'train.sharding_rules': {origin}: dimension {d} of {path} {tuple(shape)} "
                f'does not divide by the {sizes[axis]} devices of axis {axis!r}'
            )
    return P(*entries)


def leaf_specs(tree, mesh: Mesh, rules, min_size: int, prefix: str = '', used: set | None = None):
    """A PartitionSpec for every leaf of a params or model-state tree."""

    def spec_of(path, leaf, i):
        shape = tuple(np.shape(leaf))
        if i is not None:
            pattern, spec = rules[i]
            return _spec(path, shape, spec, mesh, f'rule {i} ({pattern!r}, {spec!r})')
        if math.prod(shape) >= min_size:
            return _spec(path, shape, 'auto', mesh, 'the default rule')
        return P()

    return parameter_paths.map_by_first_match(
        spec_of, tree, [pattern for pattern, _ in rules], prefix=prefix, used=used
    )


def state_shardings(abstract_state, mesh: Mesh, rules=(), min_size: int = 1024, split: bool = True):
    """NamedShardings for a TrainState: replicated everywhere, or (`split`) parameters and model state by the
    rules and the optimizer state following its parameters. A rule that matches no leaf is an error (a typo)."""
    import optax

    replicated = NamedSharding(mesh, P())
    if not split:
        return jax.tree.map(lambda _: replicated, abstract_state)
    rules = tuple((str(p), str(s)) for p, s in rules)
    for i, (pattern, _) in enumerate(rules):
        require_regex(pattern, f'train.sharding_rules[{i}]')
    used: set[str] = set()
    named = lambda spec: NamedSharding(mesh, spec)
    params = jax.tree.map(
        named, leaf_specs(abstract_state.params, mesh, rules, min_size, used=used), is_leaf=lambda x: isinstance(x, P)
    )
    model_state = jax.tree.map(
        named,
        leaf_specs(abstract_state.model_state, mesh, rules, min_size, used=used),
        is_leaf=lambda x: isinstance(x, P),
    )
    unused = [rules[i] for i in range(len(rules)) if i not in used]
    if unused:
        raise ConfigError(
            f"config key 'train.sharding_rules': {unused} match no parameter or model state; paths look "
            f'like {parameter_paths.paths_look_like(abstract_state.params)}'
        )
    opt_state = optax.tree_utils.tree_map_params(
        abstract_state.tx,
        lambda _, sharding: sharding,
        abstract_state.opt_state,
        params,
        transform_non_params=lambda _: replicated,
    )
    ema = None if abstract_state.ema is None else {'params': params, 'model_state': model_state}  # split alike
    return abstract_state.replace(
        step=replicated, params=params, model_state=model_state, opt_state=opt_state, rng=replicated, ema=ema
    )
