# The two commands: `make demo` (set up, run the main job) and `make test` (set up, run the tests).
# Set-up creates .venv with the machine's python3 and installs the exact versions in requirements.lock.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck setup clean browser bench-engine bench-pipeline bench-fallback bench-intake bench-startup bench-scale bench-classical bench-api bench-memory bench-fastpath bench-estimate bench-library bench-devices bench-vendors bench-throughput

setup: $(STAMP)

$(STAMP): requirements.lock requirements-braket.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-input -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-input --no-deps -r requirements-braket.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-input --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/qhopper demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The report's test loads it in a real headless browser: Debian's chromium (CI runs as root).
# One install at a time: two checkouts' `make test` side by side must not race for apt's lock.
browser:
	command -v chromium >/dev/null || flock /tmp/qhopper-browser-install.lock sh -c \
	  'command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)'

test: lint typecheck browser
	$(BIN)/pytest

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) benchmarks/requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-input -r benchmarks/requirements.txt
	touch $(BENCH_STAMP)

bench-engine: $(BENCH_STAMP) .venv-qokit
	$(BIN)/python benchmarks/bench_engine.py

# The fast path at n = 12..24, p = 1..3 beside QOKit's CPU simulator (5-10 min; --quick: 1 min).
bench-fastpath: $(STAMP) .venv-qokit
	$(BIN)/python benchmarks/bench_fastpath.py

# QOKit pins an older qiskit: it gets an environment of its own, used only by the benchmarks.
.venv-qokit:
	$(PYTHON) -m venv .venv-qokit
	.venv-qokit/bin/python -m pip install --quiet --disable-pip-version-check --no-input -r benchmarks/requirements-qokit.txt

bench-startup: $(BENCH_STAMP)
	$(BIN)/python benchmarks/bench_startup.py

# The angle library through run_once: evaluations a problem and quality beside the p=2 ceiling (issue 25).
bench-library: $(STAMP)
	cd benchmarks && ../$(BIN)/python bench_library.py

# Device-shaped batches on aer-noisy:fake_torino: packed against one problem a circuit (issue 24).
bench-devices: $(STAMP)
	cd benchmarks && ../$(BIN)/python bench_devices.py

bench-classical: $(BENCH_STAMP)
	$(BIN)/python benchmarks/bench_classical.py
	$(BIN)/python benchmarks/bench_tabu.py

bench-api: $(STAMP)
	$(BIN)/python benchmarks/bench_api.py

bench-memory: $(STAMP)
	$(BIN)/python benchmarks/bench_memory.py

# qhopper run's estimated wall time against the actual, on three workloads (~3 min).
bench-estimate: $(STAMP)
	$(BIN)/python benchmarks/bench_estimate.py

# 1-3 workers x 1-2 runners, SQLite then PostgreSQL intake (SCALE_PROBLEMS=5000: ~4 min).
SCALE_PROBLEMS ?= 5000
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/bench_scale.py --problems $(SCALE_PROBLEMS)
	$(BIN)/python benchmarks/bench_scale.py --problems $(SCALE_PROBLEMS) --database-url $(PG_URL)

# Issue 26: a drain of 200,000 small problems, this checkout beside a worktree of the commit
# before the work (benchmarks/bench_throughput.py --help), on SQLite and PostgreSQL.
bench-throughput: $(STAMP)
	cd benchmarks && ../$(BIN)/python bench_throughput.py

bench-pipeline: $(STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py

bench-fallback: $(STAMP)
	$(BIN)/python benchmarks/bench_fallback.py

# PROBLEMS=1000000 for the million-problem drain; the PostgreSQL half needs a server at PG_URL.
PROBLEMS ?= 100000
PG_URL ?= postgresql+psycopg://root@127.0.0.1:5432/test
bench-intake: $(STAMP)
	$(BIN)/python benchmarks/bench_intake.py --problems $(PROBLEMS)
	$(BIN)/python benchmarks/bench_intake.py --problems $(PROBLEMS) --database-url $(PG_URL)

clean:
	rm -rf $(VENV) .qhopper .pytest_cache .mypy_cache .ruff_cache

# Every vendor on one queue (aer, braket-local, ibm:fake_manila, braket-local:dm), and a 10 % canary's cost (issue 27).
bench-vendors: $(STAMP)
	$(BIN)/python benchmarks/bench_vendors.py
