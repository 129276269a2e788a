# Two commands for a new machine: `make run` and `make test`. Everything they need is installed
# by the project's own scripts, idempotently; slow artefacts are cached under var/.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: run test setup system timescaledb venv web lint typecheck fuzz bench lock db-stop

run: setup
	$(BIN)/telematics demo

test: setup
	$(BIN)/ruff check .
	bash .ci/pytest.sh

setup: system timescaledb venv web

system:
	@bash setup/system-packages.sh

timescaledb: system
	@bash setup/timescaledb.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@bash setup/system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

# The map page's browser libraries, from npm into var/web/vendor (a no-op when web/package-lock.json is unchanged).
web: system
	@bash setup/web.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy telematics protocols ingest store tracking geofence alerts access bench web replay attendance distributed

# Longer fuzzing of every decoder than the quick run inside `make test`.
fuzz: setup
	FUZZ_EXAMPLES=20000 $(BIN)/pytest -q tests/protocols -k fuzz

bench: setup
	$(BIN)/python -m bench.decode
	$(BIN)/python -m bench.e2e

lock:
	rm -rf var/lock-venv && $(PYTHON) -m venv var/lock-venv
	var/lock-venv/bin/pip install -q -e '.[dev]'
	{ echo "# Pinned versions for a reproducible install: pip install -c constraints.txt -e '.[dev]'"; \
	  echo "# Regenerate with: make lock"; var/lock-venv/bin/pip freeze | grep -v '^-e'; } > constraints.txt

db-stop: venv
	$(BIN)/telematics db stop
