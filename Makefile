# Veritas: `make demo` and `make test` are all a newcomer needs. Both install what is missing first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
JARS := infra/kafka/.cache/lib/.complete
PYTHON ?= python3

.PHONY: install demo test test-unit up down status lint bench schemas clean

install: $(STAMP) $(JARS)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is needed"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install -q --python $(PY) -e '.[dev,ml]'
	touch $(STAMP)

$(JARS): infra/kafka/pom.xml
	bash infra/kafka/kafka.sh fetch

demo: install
	$(BIN)/veritas up
	$(BIN)/veritas demo

# tests/unit needs no service: it runs beside the stack tests, which mostly wait on the services,
# and its report follows theirs. The exit status is the first failing session's.
test: install
	@mkdir -p var; \
	$(BIN)/pytest -q -p no:cacheprovider tests/unit > var/test-unit.log 2>&1 & unit=$$!; \
	$(BIN)/pytest -q -p no:cacheprovider --durations=25 tests/contract tests/e2e tests/integration; \
	stack=$$?; wait $$unit; unit_rc=$$?; \
	echo "=== tests/unit (beside the stack tests): exit $$unit_rc ==="; cat var/test-unit.log; \
	exit $$(( stack != 0 ? stack : unit_rc ))

test-unit: install
	$(BIN)/pytest -q -p no:cacheprovider tests/unit tests/contract -k "not postgres"

up: install
	$(BIN)/veritas up

down:
	@if [ -x $(BIN)/veritas ]; then $(BIN)/veritas down; else echo "nothing to stop (not installed)"; fi

status: install
	$(BIN)/veritas status

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

schemas: install
	$(BIN)/python -m veritas.schemagen

bench: install
	$(BIN)/python bench/run_all.py

clean: down
	rm -rf var
