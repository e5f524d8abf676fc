"""The names a config chooses code by (models, tasks, dataset builders), and how each name resolves to code.

A built-in is a public module of one jaxdl package (`jaxdl/models/cnn.py` is the model `cnn`) that exports one
attribute (`MODEL`, `TASK`, `BUILDER`); any other name is an import path `package.module:Attr` to the user's own
code. Both resolve through `import_object`, so a built-in is found exactly as a user's model is, the list of
valid names is the package's files (written down nowhere else), and adding a built-in is one new file.

This module imports no other jaxdl module but `errors`, so anything may import it.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.machinery
import importlib.util
import inspect
import pkgutil
import sys
from pathlib import Path

from jaxdl.errors import ConfigError, UntrustedCode


def keyword_parameters(target) -> set[str] | None:
    """The keyword arguments a class or function takes (without flax's `parent` and `name`), or None when it takes
    any (**kwargs): what jaxdl may pass it besides the user's options."""
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {'parent', 'name'}


def frozen(value):
    """Options as a constructor should hold them: lists (from JSON or a command line) become tuples, so a module or
    task built from them stays hashable (jit caches by their value)."""
    if isinstance(value, (list, tuple)):
        return tuple(frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: frozen(v) for k, v in value.items()}
    return value


def is_import_path(name: str) -> bool:
    module, colon, attribute = name.partition(':')
    return (
        bool(colon)
        and bool(module)
        and attribute.isidentifier()
        and all(part.isidentifier() for part in module.split('.'))
    )


def import_object(path: str, key: str):
    """The object an import path `package.module:Attr` names, or a ConfigError naming `key` and what to do."""
    if not is_import_path(path):
        raise ConfigError(f"config key '{key}': {path!r} is not an import path; write 'package.module:Attr'")
    module_name, _, attribute = path.partition(':')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + '.')):
            raise ConfigError(
                f"config key '{key}': {path!r} does not import: no module named {e.name!r}. Put {module_name}.py "
                f'beside the experiment file, install its package, or add its directory to PYTHONPATH'
            ) from None
        raise ConfigError(
            f"config key '{key}': importing {module_name!r} for {path!r} failed: it needs "
            f'{e.name!r}, which is not installed'
        ) from None
    except Exception as e:  # a syntax error or a failing statement in the user's module
        raise ConfigError(
            f"config key '{key}': importing {module_name!r} for {path!r} failed: {type(e).__name__}: {e}"
        ) from None
    if not hasattr(module, attribute):
        public = sorted(n for n in vars(module) if not n.startswith('_'))
        close = difflib.get_close_matches(attribute, public, n=3)
        hint = f'; did you mean {", ".join(map(repr, close))}?' if close else f' (it defines: {", ".join(public[:12])})'
        raise ConfigError(f"config key '{key}': module {module_name!r} has no attribute {attribute!r}{hint}")
    return getattr(module, attribute)


def code_root(path: str) -> str | None:
    """The directory an import path's module was imported from (what sys.path needs to import it again), or None
    for a module that is part of jaxdl or of an installed package."""
    module_name = path.partition(':')[0]
    module = sys.modules.get(module_name)
    file = getattr(module, '__file__', None)
    if not file or module_name.split('.')[0] == 'jaxdl':
        return None
    root = Path(file).resolve().parent
    for _ in module_name.split('.')[1:]:
        root = root.parent
    if Path(file).name == '__init__.py':
        root = root.parent
    return None if 'site-packages' in root.parts or 'dist-packages' in root.parts else str(root)


def named_code(config) -> tuple[tuple[str, str], ...]:
    """(config key, name) of every setting that names code: model, task, dataset builder, runner, trackers,
    hooks."""
    return (
        ('model.name', config.model.name),
        ('task.name', config.task.name),
        ('dataset.name', config.dataset.name),
        ('train.parallel', config.train.parallel),
        *(('train.trackers', name) for name in config.train.trackers),
        *(('train.hooks', name) for name in config.train.hooks),
    )


def code_roots(config) -> list[str]:
    """The directories the user's code that `config` names (`named_code`) was imported from: what a run records so
    that evaluate, predict and rerun import it again from any current directory."""
    names = [name for _, name in named_code(config)]
    return sorted({root for root in (code_root(n) for n in names if is_import_path(n)) if root})


def add_code_roots(config, roots, *, trust: bool = False, run: str = 'the run') -> None:
    """Makes the user code a recorded run names (`named_code`) importable from the directories
    the run recorded, as Hugging Face's `trust_remote_code` does: a module importable as things stand (an installed
    package, the current directory) is imported from there; one only a recorded directory other than the current
    directory holds would run code that came with the run, so that needs `trust`, else an UntrustedCode error
    naming each module and folder, before anything is imported. Recorded directories go last on sys.path, so they
    never shadow an installed package."""
    here = Path.cwd().resolve()
    needed, outside = [], []
    for key, name in named_code(config):
        if not is_import_path(name):
            continue
        top = name.partition(':')[0].split('.')[0]
        if top in sys.modules or importlib.machinery.PathFinder.find_spec(top, sys.path) is not None:
            continue
        holders = [r for r in roots or () if r and importlib.machinery.PathFinder.find_spec(top, [r]) is not None]
        if holders:
            needed.append(holders[0])
            if Path(holders[0]).resolve() != here:
                outside.append(f'{top} ({key} {name!r}) from {holders[0]}')
    if outside and not trust:
        raise UntrustedCode(
            f'{run} names code from outside the installed packages and the current directory: '
            f'{"; ".join(outside)}. Importing it runs that code; if you trust where the run came '
            f'from, pass --trust-code'
        )
    for root in needed:
        if root not in sys.path:
            sys.path.append(root)


@dataclasses.dataclass(frozen=True)
class Registry:
    kind: str  # what a name names, for messages: 'model'
    key: str  # the config key holding the name: 'model.name'
    package: str  # whose public modules are the built-ins: 'jaxdl.models'
    attribute: str  # what each built-in module exports: 'MODEL'

    def builtin_names(self) -> tuple[str, ...]:
        """The built-ins, from the package's files (without importing them)."""
        spec = importlib.util.find_spec(self.package)
        assert spec is not None and spec.submodule_search_locations is not None, self.package
        locations = spec.submodule_search_locations
        return tuple(
            sorted(m.name for m in pkgutil.iter_modules(locations) if not m.ispkg and not m.name.startswith('_'))
        )

    def import_path(self, name: object) -> str:
        """A built-in name's import path, or the user's import path itself; else a ConfigError with the choices."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"config key '{self.key}': must name a {self.kind}, got {name!r}")
        if name in self.builtin_names():
            return f'{self.package}.{name}:{self.attribute}'
        if is_import_path(name):
            return name
        close = difflib.get_close_matches(name, self.builtin_names(), n=1)
        hint = f' (did you mean {close[0]!r}?)' if close else ''
        raise ConfigError(
            f"config key '{self.key}': unknown {self.kind} {name!r}{hint}; built-in: "
            f"{', '.join(self.builtin_names())}; or an import path 'package.module:Attr' to your own"
        )

    def resolve(self, name: str):
        return import_object(self.import_path(name), self.key)


# Choices implemented inside one module each (jaxdl.optim, jaxdl.train.runners), listed here once.
OPTIMIZERS = ('sgd', 'rmsprop', 'adam', 'adamw')
SCHEDULES = ('constant', 'piecewise', 'cosine')
CPU_CONVOLUTIONS = ('eigen', 'ynnpack')
WEIGHTS = ('raw', 'ema')  # a run's own weights or their moving average (optimizer.ema_decay)

MODELS = Registry('model', 'model.name', 'jaxdl.models', 'MODEL')
TASKS = Registry('task', 'task.name', 'jaxdl.tasks', 'TASK')
BUILDERS = Registry('dataset', 'dataset.name', 'jaxdl.data.builders', 'BUILDER')
KINDS = Registry('data kind', 'task.name', 'jaxdl.data.kinds', 'KIND')
RUNNERS = Registry('runner', 'train.parallel', 'jaxdl.train.runners', 'RUNNER')
TRACKERS = Registry('tracker', 'train.trackers', 'jaxdl.trackers', 'TRACKER')
