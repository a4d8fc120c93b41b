# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-8)

.PHONY: demo test bench soak lint typecheck clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

demo: $(STAMP)
	$(BIN)/orchestrion demo

test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/mypy --strict tests/typing
	$(BIN)/pyright
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.bench-installed
	$(BIN)/python bench/bench_core.py
	$(BIN)/python bench/bench_leases.py
	$(BIN)/python bench/bench_patterns.py
	$(BIN)/python bench/bench_workers.py --repeat 1
	$(BIN)/python bench/bench_peers.py
	$(BIN)/python bench/bench_tracing.py

# 1,000 runs with 20% injected faults on a SQLite file (not in CI): see bench/soak.py.
soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict tests/typing
	$(BIN)/pyright

clean:
	rm -rf $(VENV) .orchestrion .pytest_cache
