"""The built-in experiments, shipped inside the package so that an installed wheel runs them by name
(`jaxdl train digits_cnn`); `jaxdl experiments` lists them. Each is one file defining `get_config()`, loaded by
`jaxdl.config.load_config_file` like any experiment file of a user's."""

import ast
from pathlib import Path

DIRECTORY = Path(__file__).parent


def names() -> list[str]:
    return sorted(p.stem for p in DIRECTORY.glob('*.py') if not p.name.startswith('_'))


def path(name: str) -> Path | None:
    """The file of the built-in experiment `name`, or None when there is none of that name."""
    return DIRECTORY / f'{name}.py' if name in names() else None


def summary(name: str) -> str:
    """The first paragraph of the experiment's docstring, read without running it."""
    file = path(name)
    if file is None:
        raise KeyError(f'no built-in experiment {name!r}')
    docstring = ast.get_docstring(ast.parse(file.read_text())) or ''
    return docstring.split('\n\n')[0].replace('\n', ' ')
