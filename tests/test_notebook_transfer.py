"""The transfer notebook re-executes from top to bottom (the check: tests/test_notebooks.py)."""
import pytest

from test_notebooks import TRANSFER, execute_notebook
from conftest import ROOT

pytestmark = pytest.mark.slow


def test_the_transfer_notebook_executes(tmp_path, monkeypatch):
    execute_notebook(ROOT / 'notebooks' / TRANSFER, tmp_path, monkeypatch)
