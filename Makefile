# Two entry points, each setting up .venv first (Python >= 3.11 as `python3`, or PYTHON=...).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: train test test-all lint docs setup

# The main job installs what jaxdl needs to run; the tests add the dev extra (pytest, the trackers, and on
# Python 3.11 torch, torchvision and timm for the weight-import tests: most of the environment's size).
train: $(VENV)/.installed
	$(BIN)/jaxdl train digits_cnn --workdir runs/digits_cnn

# Three workers on the 2-core CI machine: much of the suite is single-threaded XLA compilation or waits on
# subprocesses, so a third worker fills the idle core time; --dist loadscope keeps each module's shared fixtures
# (a trained run) on one worker (spreading single tests instead, --dist loadgroup, took 12:48 against 11:42: the
# heavy tests then compiled side by side). `make test` (the README's, CI's on every Python) leaves out the tests
# marked slow: each is a wider case (another device count, every format of every task, a notebook) of a property a
# quick test holds too. `make test-all` runs everything. PYTEST_ARGS adds to either.
PYTEST_ARGS ?=
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -n 3 --dist loadscope -m "not slow" $(PYTEST_ARGS)

test-all: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -n 3 --dist loadscope $(PYTEST_ARGS)

# ruff's lint and format check and mypy over the package (their settings: pyproject.toml).
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check jaxdl
	$(BIN)/ruff format --check jaxdl
	$(BIN)/mypy

# The docs site into site/ (open site/index.html), strict: a broken link or reference fails the build.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

$(VENV)/.installed-docs: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[docs]'
	touch $@

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "jaxdl needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@
