# promoter's entry points. `make demo` first; `make test` before every commit.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all build test lint demo bench ci

all: build

build:
	$(CARGO) build

## test: the whole suite (unit + integration, real gpg)
test:
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --no-fail-fast; \
	else \
		$(CARGO) test --no-fail-fast; \
	fi

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

## demo: DEV -> QAT -> PRD on three throwaway clusters
demo: build
	@echo "demo: the database half (apply, promote, ledger) is not built yet; nothing to show beyond 'make test'."

## bench: speed and memory against psql
bench:
	@echo "bench: no benchmarks yet (they arrive with the script executor)."

ci: lint test
