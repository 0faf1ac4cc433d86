# Two commands for people (README): `make demo` and `make test`. Everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/include:$(CURDIR)/plugins:$(CURDIR)/dev

.PHONY: demo test test-unit test-faults test-scale test-volume test-install lint prepare clean bench flaky

# The venv is rebuilt only when a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

# Kafka jars from Maven Central (cached in .cache/), redis-server and PostgreSQL from the OS packages.
prepare: $(VENV)/.installed
	$(PY) -m devstack prepare

test: prepare lint
	$(PY) -m pytest tests -m "not faults and not scale and not volume and not install"

# The volume tier: per API a burst of changes past every in-memory bound between two polls, re-fetch
# backlogs drained at the account's budget, poison objects, ledger loss; Kafka compared with the simulator.
test-volume: prepare
	$(PY) -m pytest tests -m volume

# The fault suite (kills at named points, a zombie, broker and Redis loss, storms, hostile webhooks): about
# 17 minutes on 2 cores, so not in `test` (which must stay under 20); .ci/run runs it after `test`.
test-faults: prepare
	$(PY) -m pytest tests -m faults

# Scale-out without Docker: Airflow with CeleryExecutor on PostgreSQL, 2 Celery workers, 3 Kafka brokers
# (replication factor 3); all backfills at once, then incrementals; truth and the shared rate limit checked.
test-scale: prepare
	$(PY) -m pytest tests -m scale

# apisync as users install it: the wheel built from pyproject.toml into a fresh virtual environment with
# Airflow from the registry (requirements.txt as constraints, pip's cache reused), nothing from this repo on
# its path; `apisync airflow setup`, the three-line DAG file, a backfill and the normalizer against the simulator.
test-install: prepare
	$(PY) -m pytest tests -m install

# Throughput, memory and latency of every path against a raw-producer baseline measured in the same run
# (benchmarks/run.py starts its own Kafka, Redis and simulator); prints one table, under 10 minutes.
bench: prepare
	$(PY) benchmarks/run.py

# The flake detector: RUNS runs of TESTS (pytest arguments) with BURN CPU-burning processes beside them;
# lists every test whose outcome changed between runs, and exits 1 if any did.
RUNS ?= 5
BURN ?= 1
TESTS ?= tests -m "not faults and not scale and not volume and not install"
flaky: prepare
	$(PY) -m devstack.flaky -n $(RUNS) --burn $(BURN) -- $(TESTS)

test-unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit tests/dags -q

demo: prepare
	$(PY) -m devstack demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check include plugins dev dags tests benchmarks

clean:
	rm -rf .stack
