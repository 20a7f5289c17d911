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

# Two sessions side by side, as the stack tests mostly wait on the services: tests/unit (no
# service), the CLI's own stack and the log audit (which forges records on its topics for good) on
# test slot 3; everything else on the shared stack of slot 0. The reports follow one another, and
# the exit status is the first failing session's.
BESIDE := tests/unit tests/e2e/test_cli_lifecycle.py tests/e2e/test_log_audit.py
test: install
	@mkdir -p var; \
	TEST_SLOT=3 $(BIN)/pytest -q -p no:cacheprovider --durations=10 $(BESIDE) > var/test-beside.log 2>&1 & beside=$$!; \
	$(BIN)/pytest -q -p no:cacheprovider --durations=25 tests/contract tests/e2e tests/integration \
	  $(addprefix --ignore=,$(filter-out tests/unit,$(BESIDE))); \
	stack=$$?; wait $$beside; beside_rc=$$?; \
	echo "=== $(BESIDE) (beside, test slot 3): exit $$beside_rc ==="; cat var/test-beside.log; \
	exit $$(( stack != 0 ? stack : beside_rc ))

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
