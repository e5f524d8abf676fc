"""Every notebook re-executes from top to bottom (its runs go to a temporary directory). JAXDL_QUICK shortens
the regression and transfer notebooks' training to keep the suite within its time; their saved outputs, and the
classification notebook here, come from the full experiments. The transfer notebook, the longest, runs from
tests/test_notebook_transfer.py so that pytest-xdist runs it beside these."""

import nbclient
import nbformat
import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow
TRANSFER = '03_transfer.ipynb'
NOTEBOOKS = sorted(p for p in (ROOT / 'notebooks').glob('*.ipynb') if p.name != TRANSFER)


def execute_notebook(path, tmp_path, monkeypatch):
    monkeypatch.setenv('JAXDL_RUNS_DIR', str(tmp_path))
    monkeypatch.setenv('JAXDL_QUICK', '1')
    if path.name == TRANSFER:  # XLA's default level: at level 0 the pooled U-Net's gradients are NaN
        monkeypatch.setenv('XLA_FLAGS', '')  # (tests/test_transfer_shapes.py, benchmarks/README.md)
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3',
                            resources={'metadata': {'path': str(path.parent)}}).execute()
    errors = [o for c in notebook.cells for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert not errors
    images = [o for c in notebook.cells for o in c.get('outputs', []) if 'image/png' in o.get('data', {})]
    assert len(images) >= 3  # e.g. curves, confusion matrix, test images with probabilities


@pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    execute_notebook(path, tmp_path, monkeypatch)
