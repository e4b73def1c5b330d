# algopack-monitor — entry points. `make test` and `make demo` work on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: help deps bins test test-unit test-integration lint demo demo-smoke run bench clean

help:
	@echo "make demo   - run the whole system on the embedded sandbox (Ctrl-C stops it)"
	@echo "make test   - install what is missing, run lint-free unit + integration tests"
	@echo "make lint   - ruff"
	@echo "make bench  - benchmarks, writes BENCHMARKS.md (not part of make test)"
	@echo "make run    - exporter + bot against the real ISS, secrets from .env"

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

deps: $(STAMP)

# Real Prometheus 2.42 / Alertmanager 0.25 from Debian; installed when missing (needs root).
bins:
	@if ! command -v prometheus >/dev/null || ! command -v prometheus-alertmanager >/dev/null \
	   || ! command -v promtool >/dev/null || ! command -v amtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && apt-get install -y prometheus prometheus-alertmanager docker-compose; \
	  else \
	    echo "missing prometheus/alertmanager: run 'sudo apt-get install -y prometheus prometheus-alertmanager docker-compose'" >&2; exit 1; \
	  fi; \
	fi

lint: deps
	$(VENV)/bin/ruff check exporter bot sandbox tests bench deploy

test: deps bins lint
	$(PY) -m pytest -q -p no:cacheprovider --durations=25 tests

test-unit: deps
	$(PY) -m pytest -q tests/unit

test-integration: deps bins
	$(PY) -m pytest -q tests/integration

demo: deps bins
	$(PY) -m deploy.demo

run: deps
	$(PY) -m deploy.run

bench: deps bins
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .demo
