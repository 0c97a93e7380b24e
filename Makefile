# Two commands for a fresh machine: `make demo` and `make test`. Both create (or reuse) .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SWEEPS ?= 0
INTERVAL ?= 5

.PHONY: test demo lint typecheck pytest bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

lint: $(BIN)/.installed
	$(BIN)/ruff check approver tests bench policies
	$(BIN)/ruff format --check approver tests bench policies

typecheck: $(BIN)/.installed
	$(BIN)/mypy

pytest: $(BIN)/.installed
	$(BIN)/pytest -q

test: lint typecheck pytest

demo: $(BIN)/.installed
	$(BIN)/python -m approver demo --sweeps $(SWEEPS) --interval $(INTERVAL)

bench: $(BIN)/.installed
	$(BIN)/python bench/policy.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
