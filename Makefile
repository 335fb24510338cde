# Two entry points on a fresh machine: `make run` (example app on its embedded sandbox) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/flask --app example_app run

lint: $(STAMP)
	$(BIN)/ruff check flask_otp_conversion tests example_app

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

test: lint typecheck docs pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache instance
