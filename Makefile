# promoter's entry points. `make demo` first; `make test` before every commit.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all build test lint demo practice bench ci

all: build

build:
	$(CARGO) build

## test: the whole suite against a PostgreSQL cluster it starts (and stops) itself
test:
	scripts/test

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

## demo: DEV -> QAT -> PRD on three throwaway clusters
demo: build
	scripts/demo

## practice: branches, profiles, a baseline and a redo on 30 changesets
practice: build
	scripts/practice

## bench: speed and memory against psql
bench:
	scripts/bench

ci: lint test
