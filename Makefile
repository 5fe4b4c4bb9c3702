# Streaming lakehouse: `make up` to run it, `make test` to test it. `make help` lists all.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
LAKEHOUSE := $(VENV)/bin/lakehouse
STAMP := $(VENV)/.installed
LOCK := infra/requirements.lock
LOCK_ARGS ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install lock up up-cluster down status test test-fast bench chaos soak lint doctor clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

# Installs from the hashed lock, not from requirements.txt, so every machine gets the same bytes.
$(STAMP): $(LOCK) pyproject.toml
	@command -v python3.11 >/dev/null || command -v python3 >/dev/null || { echo "Python 3.11 is required"; exit 1; }
	test -x $(PY) || python3 -m venv $(VENV)
	@# a new venv's own pip (23.2) rejects the lock: it sees mashumaro[msgpack] as unpinned
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## virtualenv, Python packages and jars (idempotent)
	$(LAKEHOUSE) install

# Pins move only here, on purpose; LOCK_ARGS="--upgrade-package NAME" lets one package move.
lock: $(STAMP) ## refresh infra/requirements.lock from infra/requirements.txt on purpose
	VENV=$(VENV) infra/lock_requirements.sh $(LOCK_ARGS)

up: install ## install what is missing, start the platform and a demo feed, print URLs
	$(LAKEHOUSE) up

up-cluster: install ## same, with a Spark standalone master + worker
	$(LAKEHOUSE) up --spark-cluster

down: ## stop everything `up` started
	@test -x $(LAKEHOUSE) && $(LAKEHOUSE) down || echo "nothing installed, nothing to stop"

status: ## per service: pid, port, health, URL, memory
	$(LAKEHOUSE) status

doctor: ## check Java, Maven, disk, ports, versions
	$(LAKEHOUSE) doctor

# pytest's exit code 5 means no test ran: that is a failure here, not a pass.
test: install ## run the test suite (starts its own platform under .lakehouse-test)
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

test-fast: install ## only the tests that need no running service
	$(PY) -m pytest -m "not services and not spark and not slow" $(PYTEST_ARGS)

bench: install ## benchmarks, JSON results under bench-results/
	$(LAKEHOUSE) bench all --json

# On a platform of its own (.lakehouse-chaos, ports +300): it restarts Kafka, S3 and Postgres.
chaos: install ## kill drivers, restart services; every sink reconciled (bench-results/chaos.json)
	$(LAKEHOUSE) chaos --own-platform

# On the running platform (make up): 30 minutes at 5,000 events/s.
soak: install ## steady load; RSS, state and lag over time (bench-results/soak.json, soak.png)
	$(LAKEHOUSE) soak

lint: install ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check lakehouse control infra spark producers dashboard dags tests

clean: down ## stop and delete all local data (.lakehouse)
	rm -rf .lakehouse .lakehouse-test .lakehouse-chaos
