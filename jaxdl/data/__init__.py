"""Data: offline TFDS builders, per-task preprocessing and the tf.data pipeline.

This module itself imports nothing heavy, so `jaxdl datasets` answers without loading TensorFlow.
"""

import contextlib
import io
import os
from pathlib import Path

# Before TensorFlow loads: oneDNN's custom ops reorder float arithmetic ("slightly different numerical results"),
# which reproducible preprocessing does not want, and TF's C++ start-up banner says nothing a user needs.
# setdefault: a user who wants either back sets the variable.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def builtin_datasets() -> dict[str, str]:
    """Built-in dataset name -> the first line of its builder module's docstring, read without importing it
    (`jaxdl datasets` answers without loading TensorFlow)."""
    import ast
    import importlib.util

    from jaxdl.registry import BUILDERS

    spec = importlib.util.find_spec(BUILDERS.package)
    assert spec is not None and spec.submodule_search_locations is not None, BUILDERS.package
    folder = Path(spec.submodule_search_locations[0])
    return {
        name: (ast.get_docstring(ast.parse((folder / f'{name}.py').read_text())) or '').split('\n')[0]
        for name in BUILDERS.builtin_names()
    }


# Catalog datasets whose features the data kinds read as they are (jaxdl.data.kinds; segmentation masks through
# jaxdl.data.adapters), with what they hold. They are never downloaded at run time: prepare them with
# `jaxdl prepare NAME` (prepare_command) on a machine with internet.
CATALOG = {
    'mnist': 'one of 10 digits per image',
    'fashion_mnist': 'one of 10 garments per image',
    'cifar10': 'one of 10 classes per image',
    'cifar100': 'one of 100 classes per image',
    'kmnist': 'one of 10 characters per image',
    'emnist': 'one of 62 characters per image',
    'svhn_cropped': 'one of 10 digits per image',
    'oxford_iiit_pet': 'pet/background mask per pixel (trimap)',
    'voc': 'objects in boxes (objects); the classes present (labels)',
    'coco': 'objects in boxes (objects)',
}


@contextlib.contextmanager
def quiet_tfds():
    """While tfds prepares a dataset: its progress bars and notes (stdout, stderr, absl's log) say nothing a user
    of jaxdl needs, and stdout is for results; jaxdl says in one line what it prepares."""
    import logging

    absl = logging.getLogger('absl')
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        absl.setLevel(level)


def prepare_command(name: str, data_dir: str, *, array_record: bool = False) -> str:
    """The one command that prepares a dataset (`jaxdl prepare`), as every message that advises it writes it."""
    import shlex

    return f'jaxdl prepare {shlex.quote(name)} --data-dir {shlex.quote(str(data_dir))}' + (
        ' --array-record' if array_record else ''
    )


def resolve_data_dir(data_dir: str = '') -> str:
    return data_dir or os.environ.get('TFDS_DATA_DIR') or os.path.expanduser('~/tensorflow_datasets')


def prepared_versions(name: str, data_dir: str = '') -> list[str]:
    """Versions of `name` prepared under the data dir (read from disk, without TensorFlow)."""
    root = Path(resolve_data_dir(data_dir)) / name
    return sorted(p.parent.name for p in root.glob('*/dataset_info.json')) if root.is_dir() else []


def __getattr__(name):
    if name == 'from_arrays':  # loads TensorFlow: only when asked for
        from jaxdl.data.arrays import from_arrays

        return from_arrays
    raise AttributeError(f'module jaxdl.data has no attribute {name!r}')
