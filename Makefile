PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench clean prometheus

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

lint: $(STAMP)
	$(BIN)/ruff check telemetry_otel tests examples benchmarks noxfile.py
	$(BIN)/ruff format --check telemetry_otel tests examples benchmarks noxfile.py
	$(BIN)/mypy

# The Prometheus tests need Debian's prometheus server; as root, install it when missing.
prometheus:
	@command -v prometheus >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && { apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
	       || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; }; } \
	  || echo "prometheus is not installed: its tests will skip (apt-get install prometheus)"

test: lint prometheus
	$(BIN)/python -m pytest -q

# make test, then the suite on every supported CPython (3.10 to 3.13), each in its own
# environment (nox); a version this machine lacks is skipped with one line saying so.
test-all: test
	$(BIN)/nox

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_collect.py
	$(BIN)/python benchmarks/bench_e2e.py
	$(BIN)/python benchmarks/bench_outage.py
	$(BIN)/python benchmarks/bench_asyncio.py

clean:
	rm -rf $(VENV) .nox .pytest_cache .mypy_cache .ruff_cache *.egg-info
