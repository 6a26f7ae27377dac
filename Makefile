# The two commands: `make run` (embedded, offline) and `make test` (PostgreSQL + Redis, then embedded).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
WORKERS ?= $(shell echo $$(( $$(nproc) * 2 )))
# Connections waiting to be accepted, per listening socket (uvicorn's default is 2048); the kernel caps it at
# net.core.somaxconn. A burst of new clients past it waits for a SYN retry (1 s, then 3 s).
BACKLOG ?= 4096
# Where the workers of `make serve` share their Prometheus samples (gateway/core/metrics.py).
PROMETHEUS_MULTIPROC_DIR ?= $(CURDIR)/var/prometheus
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/imagegate
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/imagegate_bench

.PHONY: run serve bench test test-embedded faults lint install worker beat clean chromium preflight migrations-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

## Embedded default: SQLite under var/, no Redis, Celery inline, the local provider.
run: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput -v0
	PORT=$(PORT) $(BIN)/python manage.py demo_setup
	DEBUG=$${DEBUG:-true} exec $(BIN)/uvicorn gateway.asgi:application --host $(HOST) --port $(PORT)

## Production mode: settings from the environment (DATABASE_URL, REDIS_URL, SECRET_KEY, ...).
# uvicorn reads it too; each worker takes its share of the rate limits while Redis is down (docs/operations.md).
serve: export WEB_CONCURRENCY = $(WORKERS)
serve: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput -v0
	@# Prometheus multiprocess mode: every worker writes its samples here; last run's are removed first.
	mkdir -p "$(PROMETHEUS_MULTIPROC_DIR)" && find "$(PROMETHEUS_MULTIPROC_DIR)" -maxdepth 1 -name '*.db' -delete
	PROMETHEUS_MULTIPROC_DIR="$(PROMETHEUS_MULTIPROC_DIR)" DEBUG=false exec $(BIN)/uvicorn gateway.asgi:application --host $${HOST:-0.0.0.0} --port $(PORT) \
		--workers $(WORKERS) --backlog $(BACKLOG) --no-access-log --log-level warning --http gateway.server:HeaderGuardedProtocol

## The long benchmarks (PostgreSQL + Redis, about 6 min): many slow requests in flight, then the governance
## hot path. Fails on an error or a throughput far below the upstream alone; the targets are printed
## (docs/benchmarks.md). `timeout -s INT` lets a benchmark stop the servers it started.
bench: preflight $(VENV)/.test-installed
	@# A database of its own, created when missing (the suite's is dropped after each run).
	@$(BIN)/python -c 'import sys, psycopg; from urllib.parse import urlsplit; url = urlsplit(sys.argv[1]); name = url.path[1:]; \
		admin = psycopg.connect(url._replace(path="/postgres").geturl(), autocommit=True); \
		admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() or admin.execute(f"CREATE DATABASE \"{name}\"")' \
		"$(BENCH_DATABASE_URL)"
	@export DATABASE_URL=$(BENCH_DATABASE_URL) REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)}; \
	timeout -s INT 360 $(BIN)/python bench/inflight.py; inflight=$$?; \
	timeout -s INT 110 $(BIN)/python bench/governance.py --seconds 3 --rate 50 && exit $$inflight

worker: $(VENV)/.installed
	exec $(BIN)/celery -A gateway worker --loglevel info

beat: $(VENV)/.installed
	exec $(BIN)/celery -A gateway beat --loglevel info --schedule $(CURDIR)/var/celerybeat-schedule

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .

## Browser tests drive Debian's Chromium (browser downloads are not possible); install it when missing and we can.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is not installed and cannot be installed here: the browser tests will be skipped"

# Fails at once, before any install, when PostgreSQL or Redis is unreachable (stdlib only).
preflight:
	@DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		$(PYTHON) gateway/preflight.py

test: preflight $(VENV)/.test-installed chromium
	@export DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)}; \
	$(BIN)/ruff check . && \
	$(BIN)/ruff format --check . && \
	$(BIN)/mypy gateway accounts billing providers && \
	$(BIN)/lint-imports && \
	$(MAKE) --no-print-directory migrations-check && \
	LOCAL_PROVIDER_FALLBACK=true $(BIN)/pytest $(PYTEST_ARGS) && \
	$(MAKE) --no-print-directory test-embedded

## The suite as `make run` runs: SQLite in a throwaway VAR_DIR, no Redis (tests marked postgres or redis are skipped).
test-embedded: $(VENV)/.test-installed chromium
	@scratch=$$(mktemp -d) && trap 'rm -rf "$$scratch"' EXIT && \
	env -u DATABASE_URL -u REDIS_URL VAR_DIR="$$scratch" LOCAL_PROVIDER_FALLBACK=true $(BIN)/pytest $(PYTEST_ARGS)

## Fault drills (docs/operations.md): their own PostgreSQL, Redis, gateway workers, Celery and fake provider, on
## spare ports, stopped and started by the suite. Needs PostgreSQL's binaries, redis-server, and root (initdb runs as
## the postgres user). Not part of `make test`: under ten minutes.
faults: $(VENV)/.test-installed
	$(BIN)/pytest -p no:django -p no:cacheprovider -W "ignore:Unknown config option" faults $(PYTEST_ARGS)

## Fails when a model changed without its migration (against a throwaway embedded database).
migrations-check: $(VENV)/.installed
	@scratch=$$(mktemp -d) && trap 'rm -rf "$$scratch"' EXIT && \
	env -u DATABASE_URL -u REDIS_URL VAR_DIR="$$scratch" $(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var/ .pytest_cache
