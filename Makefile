# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-8)

.PHONY: demo test bench soak lint typecheck clean graphviz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

# Graphviz's `dot` draws the pictures of `orchestrion graph` and `show --graph`; the
# tests draw some. Installed from the system's packages when it is missing.
graphviz:
	@command -v dot >/dev/null 2>&1 || { \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "error: install Graphviz (its dot program): e.g. brew install graphviz" >&2; exit 1; \
	  elif [ "$$(id -u)" = 0 ]; then SUDO=; \
	  elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else echo "error: Graphviz's dot is missing: apt-get install graphviz (as root)" >&2; exit 1; fi; \
	  echo "installing graphviz (apt-get)"; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends graphviz >/dev/null \
	  || { $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends graphviz >/dev/null; }; }

demo: $(STAMP)
	$(BIN)/orchestrion demo

test: $(STAMP) graphviz
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
