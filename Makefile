# Two entry points matter: `make demo` (the main job) and `make test` (the whole suite).
# Both bootstrap a fresh machine: install uv if missing, then sync the locked environment.
SHELL := /bin/bash
# uv itself, or the pip-installed module when no `uv` is on PATH (fresh machines).
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PYTEST_ARGS ?=

.PHONY: bootstrap sync lint typecheck test test-fast demo demo-once bench bench-all fmt

bootstrap:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
	  || python3 -m pip install --quiet uv \
	  || python3 -m pip install --quiet --user --break-system-packages uv

sync: bootstrap
	@$(UV) sync --locked --all-extras --quiet

lint: sync
	$(UV) run --locked --all-extras ruff check src tests benchmarks
	$(UV) run --locked --all-extras ruff format --check src tests benchmarks

typecheck: sync
	$(UV) run --locked --all-extras mypy

# The whole suite: lint, strict typing, then every test (real databases, brokers, simulator).
test: lint typecheck
	$(UV) run --locked --all-extras pytest $(PYTEST_ARGS)

# Quick inner loop: tests only.
test-fast: sync
	$(UV) run --locked --all-extras pytest -x -q $(PYTEST_ARGS)

fmt: sync
	$(UV) run --locked --all-extras ruff format src tests benchmarks
	$(UV) run --locked --all-extras ruff check --fix src tests benchmarks

# Benchmarks print figures with a same-run baseline; they are not part of `make test`.
bench: sync
	$(UV) run --locked --all-extras python benchmarks/bench_core.py

bench-all: sync
	$(UV) run --locked --all-extras --group bench python benchmarks/bench_core.py
	$(UV) run --locked --all-extras --group bench python benchmarks/bench_ledger.py
	$(UV) run --locked --all-extras --group bench python benchmarks/bench_dispatch.py
	$(UV) run --locked --all-extras --group bench python benchmarks/bench_gateway.py

# The main job: simulator + gateway on SQLite, a few hundred orders paid with chaos on,
# and a summary proving each was applied exactly once. ARGS=--once exits afterwards.
demo: sync
	$(UV) run --locked --all-extras wxpaykit demo $(ARGS)

demo-once: sync
	$(UV) run --locked --all-extras wxpaykit demo --once $(ARGS)
