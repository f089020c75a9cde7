# Two entry points matter: `make demo` (the main job) and `make test` (the whole suite).
# Both bootstrap a fresh machine: install uv if missing, then sync the locked environment.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PYTEST_ARGS ?=

.PHONY: bootstrap sync lint typecheck test test-fast demo bench fmt

bootstrap:
	@command -v uv >/dev/null 2>&1 || [ -x "$(HOME)/.local/bin/uv" ] || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv

sync: bootstrap
	@$(UV) sync --locked --all-extras --quiet

lint: sync
	$(UV) run --locked ruff check src tests benchmarks
	$(UV) run --locked ruff format --check src tests benchmarks

typecheck: sync
	$(UV) run --locked mypy

# The whole suite: lint, strict typing, then every test (real databases, brokers, simulator).
test: lint typecheck
	$(UV) run --locked pytest $(PYTEST_ARGS)

# Quick inner loop: tests only.
test-fast: sync
	$(UV) run --locked pytest -x -q $(PYTEST_ARGS)

fmt: sync
	$(UV) run --locked ruff format src tests benchmarks
	$(UV) run --locked ruff check --fix src tests benchmarks

bench: sync
	$(UV) run --locked python benchmarks/bench_core.py

# The main job: simulator + gateway on SQLite, a few hundred orders paid with chaos on,
# and a summary proving each was applied exactly once. ARGS=--once exits afterwards.
.PHONY: demo-once
demo: sync
	$(UV) run --locked wxpaykit demo $(ARGS)

demo-once: sync
	$(UV) run --locked wxpaykit demo --once $(ARGS)
