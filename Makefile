# Developer entry points. `make test` is what CI runs (via .ci/run).

PYTHON ?= python3
VENV := .venv
# Stamp file: the venv is (re)built only when pyproject.toml changes.
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -e '.[test]'
	touch $@

demo: venv
	$(VENV)/bin/dunningops demo

# The linters on src/: ruff (lint and format check) and mypy (config in pyproject.toml).
lint: venv
	$(VENV)/bin/ruff check src
	$(VENV)/bin/ruff format --check src
	$(VENV)/bin/mypy

# install-deps.sh puts PostgreSQL etc. in place (a no-op when present).
test: lint
	bash scripts/install-deps.sh
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# Plan/apply (benchmarks/README.md), the ledger import and the send cycle (benchmarks/LEDGER_CYCLE.md), the import cycle,
# two daemons on PostgreSQL against one, the console's pages against an indexed SELECT, the impact plan and the
# forecast against one `run send --dry-run`, and the unpaid-invoice notification against the same.
bench: venv
	bash scripts/install-deps.sh
	$(VENV)/bin/python -m benchmarks
	$(VENV)/bin/python -m benchmarks.ledger_cycle
	$(VENV)/bin/python -m benchmarks.import_cycle
	$(VENV)/bin/python -m benchmarks.daemons
	$(VENV)/bin/python -m benchmarks.console
	$(VENV)/bin/python -m benchmarks.impact
	$(VENV)/bin/python -m benchmarks.notify

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
