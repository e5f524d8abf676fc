"""How config settings name parts of a model: the one place parameter paths are written and matched, read by
optimizer groups (`optimizer.groups`), sharding rules (`train.sharding_rules`) and transfer
(`transfer.reinitialize`).

A leaf's path is its pytree keys joined by '/': 'backbone/Conv_0/kernel' in the parameters, 'batch_stats/
backbone/BatchNorm_0/mean' in the model state. A pattern is a regular expression that matches the whole path or a
leading part of it up to a '/', so 'backbone' and 'backbone/.*' both select the backbone. Where a setting lists
several patterns, a leaf takes the first that matches, and a pattern that matches no leaf is an error (almost
always a typo) whose message shows what the paths look like.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax


def parameter_path(key_path) -> str:
    """A pytree key path as 'backbone/Conv_0/kernel'."""
    return '/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in key_path)


def path_matches(pattern: str, path: str) -> bool:
    """`pattern` matches the whole path, or its leading part up to a '/' ('backbone' selects 'backbone/...')."""
    return re.fullmatch(f'(?:{pattern})(?:/.*)?', path) is not None


def first_match(patterns, path: str) -> int | None:
    """The index of the first of `patterns` that matches `path`, or None."""
    return next((i for i, pattern in enumerate(patterns) if path_matches(pattern, path)), None)


def flat_paths(tree) -> dict[str, Any]:
    """{path: leaf} for every leaf of `tree`, in the tree's order."""
    return {parameter_path(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def map_by_first_match(
    fn: Callable[[str, Any, int | None], Any], tree, patterns, *, prefix: str = '', used: set | None = None
):
    """`tree` with every leaf replaced by fn(path, leaf, index of the first pattern matching prefix + path, or
    None); the indices that matched are added to `used`."""

    def one(key_path, leaf):
        path = prefix + parameter_path(key_path)
        index = first_match(patterns, path)
        if index is not None and used is not None:
            used.add(index)
        return fn(path, leaf, index)

    return jax.tree_util.tree_map_with_path(one, tree)


def paths_look_like(tree) -> str:
    """The top-level modules of `tree` as 'backbone/..., head/...', for the message about a pattern matching
    nothing."""
    return ', '.join(sorted({path.split('/')[0] + '/...' for path in flat_paths(tree)}))
