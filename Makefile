# Two commands on a fresh machine: `make run` and `make test`. Only python3 (>= 3.11) and make
# are needed; everything else is installed into .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test test-fast lint bench install install-test clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "clave needs Python >= 3.11, found " + sys.version.split()[0])'
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "could not create $(VENV): on Debian/Ubuntu install python3-venv" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The monolith on its embedded defaults: SQLite under ./var, the dev inbox as the delivery channel,
# the original sample's forum data, one worker per core on http://127.0.0.1:8000.
run: install
	CLAVE_DEV_INBOX=$${CLAVE_DEV_INBOX:-true} CLAVE_SEED=$${CLAVE_SEED:-true} $(BIN)/clave serve

lint: install-test
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/mypy

# Everything, with line coverage of src/clave across every process the tests start (floor in
# [tool.coverage.report]); coverage's data files are kept in a temporary directory. The tests
# run in one process per core (pytest-xdist; at most 4, as each may start servers of its own),
# each module whole on one of them (some must run in order, or alone: README, Development).
PARALLEL ?= -n auto --maxprocesses 4 --dist loadfile

test: install-test lint
	data=$$(mktemp -d) && trap 'rm -rf "$$data"' EXIT && \
	COVERAGE_FILE="$$data/coverage" $(BIN)/python -m pytest --cov $(PARALLEL)

# The fast path: the static checks, then every test that needs no server and no other process
# (no Redis, PostgreSQL, haproxy, moto, Docker or `clave serve`).
test-fast: install-test lint
	$(BIN)/python -m pytest -m "not e2e and not deploy" $(PARALLEL)

# clave under load runs from a venv of its own with the runtime dependencies only, as `make run`
# and the image install it: the test tools' packages (pydantic, which Litestar loads whenever it
# is importable) would add ~9 MiB to every worker.
BENCH_VENV ?= .venv-bench

$(BENCH_VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -e .
	@touch $@

bench: install-test $(BENCH_VENV)/.installed
	CLAVE_BENCH_PYTHON=$(BENCH_VENV)/bin/python PYTHONPATH=scripts $(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(BENCH_VENV) var .pytest_cache .mypy_cache .ruff_cache
