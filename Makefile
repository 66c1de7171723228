# Two commands do all the set-up: `make rehearsal` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-base
# JupyterLab lives in a venv of its own: its dependencies (jsonschema's format checkers) add
# seconds to every nbformat import, which papermill runs and the tests would pay too.
LAB_VENV  ?= .venv-lab
LAB_STAMP := $(LAB_VENV)/.installed-interactive

.PHONY: help setup compile rehearsal test test-bounds test-model lab seal stop bench clean

help:
	@echo "make rehearsal   set up, then run a full release rehearsal on the local platform (archive in outputs/)"
	@echo "make test        set up, then run the test suite (what CI runs)"
	@echo "make lab         set up with JupyterLab, then step through the runbooks in a session folder of their"
	@echo "                 own (outputs/interactive/); ARGS=--no-browser prints the URL only"
	@echo "make seal SESSION=outputs/interactive/<session id>   archive a lab session like a release"
	@echo "make stop        stop the rehearsal apps left running by 'make rehearsal'"
	@echo "make test-model  the model-based test of the release record with many examples (MODEL_EXAMPLES=2000;"
	@echo "                 MODEL_SEED=N replays a run)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

# Byte-compiles the library, which every release's processes import (runner, kernel template,
# HTML worker): it stays compiled even where PYTHONDONTWRITEBYTECODE is set. Quick when current.
compile: setup
	@$(BIN)/python -m compileall -q lib > /dev/null

rehearsal: compile
	$(BIN)/runbook release $(ARGS)

# The suite on three workers, a test file each at a time (module fixtures are built once per
# file): many tests wait on processes and deadlines, so three beat two on two cores.
PYTEST_PARALLEL ?= -n 3 --dist loadfile

# Lint and format check first (a second each), then the suite. The lab venv too: tests start
# JupyterLab from it (test_lab_kernels.py) and drive its real UI (test_lab_ui.py); the suite's own
# processes never import it. Those tests must run here, not skip.
test: compile $(LAB_STAMP)
	$(BIN)/ruff check --quiet .
	$(BIN)/ruff format --check --quiet .
	HOTDASH_LAB_VENV=$(LAB_VENV) HOTDASH_REQUIRE_LAB_UI=1 $(BIN)/python -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# The model-based test (tests/test_release_model.py) with many examples: `make test` runs a few.
# Each run draws a new seed and prints it; MODEL_SEED=<seed> replays that run.
MODEL_EXAMPLES ?= 2000
MODEL_SEED ?=
test-model: compile
	HOTDASH_MODEL_EXAMPLES=$(MODEL_EXAMPLES) HOTDASH_MODEL_SEED=$(MODEL_SEED) $(BIN)/python -m pytest -s $(PYTEST_ARGS) \
		tests/test_release_model.py

# The kernel stack's lowest supported versions (tests/bounds/lowest.txt) in a venv of their own:
# the version guards, the kernel tests and whole releases. `make test` covers the highest (the
# newest versions pyproject admits, as a fresh install takes them).
LOWEST_VENV  ?= .venv-lowest
LOWEST_STAMP := $(LOWEST_VENV)/.installed-lowest

$(LOWEST_STAMP): pyproject.toml tests/bounds/lowest.txt
	@test -x $(LOWEST_VENV)/bin/python || $(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOWEST_VENV)/bin/python -m pip install --quiet -e '.[test]' -c tests/bounds/lowest.txt
	@touch $@

test-bounds: $(LOWEST_STAMP)
	$(LOWEST_VENV)/bin/python -m pytest -n 2 $(PYTEST_ARGS) tests/test_supported_versions.py tests/test_kernels.py \
		tests/test_release_e2e.py

$(LAB_STAMP): pyproject.toml
	@test -x $(LAB_VENV)/bin/python || $(PYTHON) -m venv $(LAB_VENV)
	$(LAB_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LAB_VENV)/bin/python -m pip install --quiet -e '.[interactive]'
	@touch $@

# A session folder with a copy of each runbook, so runbooks/ stays clean; `runbook seal` archives it.
lab: $(LAB_STAMP)
	$(LAB_VENV)/bin/runbook lab $(ARGS)

seal: $(LAB_STAMP)
	@test -n "$(SESSION)" || { echo "make seal: name the session: make seal SESSION=outputs/interactive/<session id>"; exit 2; }
	$(LAB_VENV)/bin/runbook seal $(SESSION)

stop: setup
	$(BIN)/runbook platform stop

clean: stop
	rm -rf .rehearsal outputs/*/ outputs/index.html outputs/metrics.json outputs/metrics.csv outputs/.index-cache.json outputs/plan-*.html
