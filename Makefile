# XtremWeb-Py developer tasks. Needs only python3 (3.11+) and a reachable package index.
#
#   make install   create/refresh .venv with the project (editable) and every extra
#   make demo      run the end-to-end demo (server, workers, client) on this machine
#   make test      lint, format check, type check, then the whole test suite (every tier, every
#                  database; a worker per core and one more: PYTEST_ARGS adds options, PYTEST_PARALLEL= runs serially)
#   make test-fast the unit, domain and HTTP contract tiers on SQLite, on every core (no lint)
#   make lint      ruff check, ruff format --check, mypy
#   make fmt       format the code and apply ruff's safe fixes
#   make bench     run the benchmarks (they print figures; they are not tests): dispatch (with its
#                  ceiling), worker overhead, macro submission; each alone: bench-dispatch, bench-worker,
#                  bench-macro, and bench-ceiling (the bare aiohttp + SQLite ceiling alone)
#   make fuzz      schemathesis (--checks all) against a real server, as an admin and as a STANDARD
#                  user (FUZZ_ARGS adds options, e.g. FUZZ_ARGS="--max-examples 200")
#   make clean     remove build outputs and caches (keeps .venv; `make distclean` removes it too)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
RUFF   := $(VENV)/bin/ruff
MYPY   := $(VENV)/bin/mypy
PYTEST := $(VENV)/bin/pytest
# tests sharing a module's fixture stay in one worker (tests/conftest.py marks them xdist_group);
# the units go out in the order tests/conftest.py gives them, longest first (not by their size).
# The whole suite runs one worker more than there are cores: its end-to-end tests spend part of
# their time waiting (processes starting, a server's answer), so with a worker per core the cores
# were half idle (2 cores: -n 2 took 8:58, -n 3 7:05, -n 4 7:25 of pytest, all passing). Since
# the tests wait less, -n 3 and -n 4 come out alike (5:44, 5:52): the cores are nearly always busy.
# The fast tiers keep the CPU busy with a worker per core.
PYTEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(len(os.sched_getaffinity(0)) + 1)' 2>/dev/null || echo auto)
PYTEST_PARALLEL ?= -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder
FAST_PARALLEL ?= -n auto --dist loadgroup --no-loadscope-reorder
# the quick loop: no real processes, no database server (about 100 s of CPU in all)
FAST_TIERS := not e2e and not slow and not postgres and not mariadb

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast lint fmt fuzz bench bench-dispatch bench-ceiling bench-worker bench-macro clean distclean

help:
	@sed -n 's/^#   //p' Makefile

install: $(STAMP)

# The venv is (re)created when its interpreter is missing or no longer runs (e.g. a venv
# copied from another machine, or a Python upgrade).
$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "XtremWeb-Py needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1)" >&2; exit 1; }
	$(PYTHON) -m venv --clear $(VENV)

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c 'import sys' 2>/dev/null || { rm -rf $(VENV); $(MAKE) --no-print-directory $(PY); }
	$(PY) -m pip install --quiet -e '.[dev,server,worker]'
	@touch $@

demo: install
	$(PY) demo/run_demo.py

test: install
	$(RUFF) check .
	$(RUFF) format --check .
	$(MYPY)
	$(PYTEST) $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-fast: install
	$(PYTEST) $(FAST_PARALLEL) -m "$(FAST_TIERS)" $(PYTEST_ARGS)

lint: install
	$(RUFF) check .
	$(RUFF) format --check .
	$(MYPY)

fmt: install
	$(RUFF) format .
	$(RUFF) check --fix .

bench: bench-dispatch bench-worker bench-macro

bench-dispatch: install
	$(PY) bench/dispatch.py --ceiling $(BENCH_ARGS)

bench-ceiling: install
	$(PY) bench/ceiling.py

bench-worker: install
	$(PY) bench/worker_overhead.py

bench-macro: install
	$(PY) bench/macro.py

fuzz: install
	$(PY) tools/fuzz.py $(FUZZ_ARGS)

clean:
	rm -rf build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
