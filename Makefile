# Outcrop: `make run` starts the embedded server, `make test` runs everything CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
PORT ?= 8000

.PHONY: install install-dev run test test-fast lint typecheck bench chaos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned first so pip takes the local CPU wheel, never a CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[embeddings,local]'
	touch $@

$(DEV_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e '.[embeddings,local,ray,dev]'
	touch $@

install: $(STAMP)

install-dev: $(DEV_STAMP)

run: install
	$(BIN)/outcrop serve --port $(PORT) --show-credentials

lint: install-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install-dev
	$(BIN)/mypy

# Everything but the long fault-injection runs (those are `make chaos`).
test: lint typecheck
	$(BIN)/python tests/ensure_test_deps.py
	$(BIN)/pytest -m "not chaos_full"

chaos: install-dev
	$(BIN)/pytest tests/chaos -v

test-fast: install-dev
	$(BIN)/pytest -m "not slow and not chaos_full and not load and not ray and not browser" -x -q

bench: install-dev
	mkdir -p bench/results
	$(BIN)/python bench/run_all.py --output bench/results/latest.jsonl

clean:
	rm -rf $(VENV) outcrop-data .mypy_cache .ruff_cache .pytest_cache
