"""How a public name changes: it keeps working, with a DeprecationWarning naming its new home and the version that
removes it, for one minor version (CHANGELOG.md, "What is public"). Python shows a DeprecationWarning where the
deprecated name is used from `__main__` (a script, a notebook) and in test runs."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def moved_names(old_module: str, new_homes: dict[str, str], removed_in: str) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `old_module` whose names moved: name -> the module that now holds it."""

    def __getattr__(name: str) -> Any:
        if name not in new_homes:
            raise AttributeError(f'module {old_module} has no attribute {name!r}')
        warnings.warn(
            f'{old_module}.{name} moved to {new_homes[name]}.{name}; the old name goes in jaxdl {removed_in}',
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(new_homes[name]), name)

    return __getattr__
