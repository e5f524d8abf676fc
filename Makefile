# Two entry points, each setting up .venv first (Python >= 3.11 as `python3`, or PYTHON=...).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: train test setup

train: $(VENV)/.installed
	$(BIN)/jaxdl train experiments/digits_cnn.py --workdir runs/digits_cnn

# Three workers on the 2-core CI machine: much of the suite is single-threaded XLA compilation or waits on
# subprocesses, so a third worker fills the idle core time. --dist loadgroup keeps the tests of a module with
# shared fixtures (a trained run; marked xdist_group) on one worker and spreads every other test on its own, so
# no worker is left with several long modules. PYTEST_ARGS adds to it (.ci/run: '-m "not slow"' on the newest
# Python).
PYTEST_ARGS ?=
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n 3 --dist loadgroup $(PYTEST_ARGS)

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "jaxdl needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@
