# Each target creates .venv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck check bench peer-bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/quickstart.py

FORMATTED := actors persistence tests benchmarks examples

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check $(FORMATTED)
	$(PY) -m mypy
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check $(FORMATTED)

typecheck: $(STAMP)
	$(PY) -m mypy

check: lint typecheck

# Ours next to the seed's naive way, same run; BENCH_ARGS=--quick for a ~10 s run.
bench: $(STAMP)
	$(PY) -m benchmarks.checkpoint_bench $(BENCH_ARGS)

# The quick peer bench (LangGraph, ADK, OpenAI Agents SDK, ...) with this project added.
PEER_BENCH ?= ../shared/peer-bench
PEER_PY    ?= /tmp/peerbench/venv/bin/python
PEER_ARGS  ?= --quick
peer-bench: $(STAMP)
	test -x $(PEER_PY) || bash $(PEER_BENCH)/setup.sh
	$(PEER_PY) -m pip install -q pykka structlog alembic click 'psycopg[binary]'
	$(PEER_PY) $(PEER_BENCH)/peer_bench.py $(PEER_ARGS) \
		--extra-adapters benchmarks/peer_adapter.py --out benchmarks/results

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache sessions.db*
