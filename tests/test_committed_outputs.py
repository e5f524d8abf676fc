"""What the repository shows a reader was made on some machine, but must not carry that machine in it: no path of
the machine a notebook or a figure's data was made on, and no library notes in the notebooks' outputs."""
import json
import logging
import re

import pytest

from jaxdl.logging import HARMLESS_LIBRARY_NOTES, drop_harmless_library_notes
from conftest import ROOT

MACHINE_PATH = re.compile(r'(?<![\w.])/(tmp|work|home|root|Users|var|private)/')
NOTEBOOKS = sorted((ROOT / 'notebooks').glob('*.ipynb'))
FIGURE_DATA = sorted((ROOT / 'docs' / 'figures').glob('*.json'))


def output_text(path) -> str:
    cells = json.loads(path.read_text())['cells']
    return '\n'.join(json.dumps(output) for cell in cells for output in cell.get('outputs', []))


@pytest.mark.parametrize('path', NOTEBOOKS + FIGURE_DATA, ids=[p.name for p in NOTEBOOKS + FIGURE_DATA])
def test_no_machine_path_in_committed_outputs(path):
    text = output_text(path) if path.suffix == '.ipynb' else path.read_text()
    found = sorted({m.group(0) + text[m.end():m.end() + 40].split('"')[0] for m in MACHINE_PATH.finditer(text)})
    assert not found, f'{path.name} holds paths of the machine it was made on: {found[:5]}'


@pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_library_warning_in_notebook_outputs(path):
    text = output_text(path)
    assert 'WARNING:absl' not in text and not any(note in text for note in HARMLESS_LIBRARY_NOTES)


def test_the_harmless_library_notes_are_dropped_and_other_warnings_kept(caplog):
    drop_harmless_library_notes()
    drop_harmless_library_notes()  # twice: one filter
    absl = logging.getLogger('absl')
    assert sum(type(f).__name__ == '_HarmlessNotes' for f in absl.filters) == 1
    with caplog.at_level(logging.WARNING, logger='absl'):
        absl.warning('Given directory is read only=/x/checkpoints')
        absl.warning('Metadata file does not exist: /x/_CHECKPOINT_METADATA')
        absl.warning('a checkpoint could not be written')
    assert [r.getMessage() for r in caplog.records] == ['a checkpoint could not be written']


def test_a_message_shows_a_path_as_it_reads_from_here(tmp_path, monkeypatch):
    from jaxdl.logging import display_path
    (tmp_path / 'work' / 'notebooks').mkdir(parents=True)
    monkeypatch.chdir(tmp_path / 'work')
    assert display_path(tmp_path / 'work' / 'runs' / 'a') == 'runs/a'
    monkeypatch.chdir(tmp_path / 'work' / 'notebooks')
    assert display_path(tmp_path / 'work' / 'runs' / 'a') == '../runs/a'  # a notebook's ../runs
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert display_path(tmp_path / 'home' / 'tensorflow_datasets') == '~/tensorflow_datasets'
    assert display_path('/elsewhere/x') == '/elsewhere/x'
