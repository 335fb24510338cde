# Two entry points on a fresh machine: `make run` (example app on its embedded sandbox) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest docs bench clean servers

# Installs a Debian package where its command is missing (CI runs as root on a fresh machine; sudo elsewhere).
APT_INSTALL = { apt-get install -y -q $(1) >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $(1); } \
	|| { sudo apt-get update -q >/dev/null && sudo apt-get install -y -q $(1); }; }

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

# The servers the suite starts on loopback ports for itself (tests/servers/): installed here where missing.
servers:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || $(call APT_INSTALL,postgresql)
	@command -v redis-server >/dev/null || $(call APT_INSTALL,redis-server)
	@{ command -v chromium && command -v chromedriver; } >/dev/null || $(call APT_INSTALL,chromium chromium-driver)

pytest: $(STAMP) servers
	$(BIN)/pytest

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

test: lint typecheck docs pytest

# Every benchmark in benchmarks/, results in benchmarks/RESULTS.md (~20 minutes on 2 cores). Needs wrk (load),
# nginx (the fixed-answer provider) and the Tencent SDK (report_cpu.py's comparison; not a project dependency).
# BENCH_BASE=<git ref> also measures that commit's delivery, from a throw-away worktree (~2 minutes more).
BENCH_BASE ?=
bench: $(STAMP)
	{ command -v wrk && { command -v nginx || test -x /usr/sbin/nginx; }; } >/dev/null || (apt-get install -y wrk nginx-light || sudo apt-get install -y wrk nginx-light)
	$(BIN)/python -c 'import tencentcloud.sms' 2>/dev/null || $(BIN)/python -m pip install --quiet tencentcloud-sdk-python-sms
	$(BIN)/python benchmarks/run.py $(if $(BENCH_BASE),--base $(BENCH_BASE))

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache instance
