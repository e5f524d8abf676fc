"""The docs site's generated pages (docs/hooks.py) hold all of what they are generated from: every config key with
its default, every command and flag, every public name. (`make docs` builds the site itself in strict mode.)"""
import argparse
import importlib.util

import pytest

from jaxdl.config import default_config
from conftest import ROOT


@pytest.fixture(scope='module')
def hooks():
    spec = importlib.util.spec_from_file_location('docs_hooks', ROOT / 'docs' / 'hooks.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flat_keys(config, prefix=''):
    for key, value in config.items():
        if hasattr(value, 'items') and len(value):
            yield from flat_keys(value, f'{prefix}{key}.')
        else:
            yield f'{prefix}{key}'


def test_the_config_reference_has_every_key_with_its_default_and_its_comment(hooks):
    text = hooks.config_reference()
    rows = {line.split('|')[1].strip().strip('`'): line for line in text.splitlines() if line.startswith('| `')}
    assert set(rows) == set(flat_keys(default_config()))
    assert "`'classification'`" in rows['task.name'] and '`30 epochs`' not in rows['train.duration']
    assert "`'30 epochs'`" in rows['train.duration']
    assert 'patience' in rows['train.early_stopping.patience'] and 'validations without improvement' in rows[
        'train.early_stopping.patience']
    # a comment above a group of keys reaches the keys after the first
    assert 'Mixup and CutMix' in rows['dataset.augment.mixup_alpha']
    assert 'dataset.augment.mixup_alpha' in rows['dataset.augment.cutmix_alpha']


def test_the_cli_reference_has_every_command_and_flag(hooks):
    from jaxdl.cli import build_parser
    text = hooks.cli_reference()
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        assert f'### `jaxdl {name}`' in text
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ('-h', '--help'):
                    assert f'`{flag}`' in text, (name, flag)


def test_the_api_page_documents_every_exported_name(hooks):
    import jaxdl
    text = hooks.api_reference()
    for name in jaxdl.__all__:
        if name in jaxdl._EXPORTS:
            assert f'::: {jaxdl._EXPORTS[name]}.{name}\n' in text + '\n', name
