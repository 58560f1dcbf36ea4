# QuakeScale: `make demo` and `make test` do all set-up on a fresh machine.
#   make demo            synth world + full pipeline on the local Dask backend, prints a summary
#   make test            the test suite (starts the local single-node SLURM when root on Debian)
#   make bench           the benchmarks in quick mode (JSON in bench-out/)
#   make lint            ruff (lint + format check, line length 120; pyproject.toml [tool.ruff]); make test runs it first
#   make containers      build the Apptainer images (needs apptainer)
#   make models          the published EQTransformer / PhaseNet / GPD weights, converted for offline use (make test runs it)
#   make TORCH=...       another torch requirement, e.g. TORCH="torch==2.13.0 --index-url ..."
PY      ?= python3
VENV    ?= .venv
TORCH   ?= torch==2.13.0
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.quakescale-installed
DEMO_OUT ?= demo-run

.PHONY: install demo test test-fast lint bench containers slurm-up slurm-down sysdeps clean models

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 2>/dev/null || true
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# System packages for the real-part tests: Debian's chromium (report in a real browser).
# SLURM is installed and started by slurm/local/start.sh from the tests' fixture.
sysdeps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1 && ! command -v chromium >/dev/null 2>&1; then \
	  echo "installing chromium (Debian) for the report test"; \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

demo: install
	$(BIN)/quakescale demo --out $(DEMO_OUT)

test: install sysdeps models lint
	MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=268435456 \
	  $(BIN)/python -m pytest -q -ra tests

test-fast: install
	$(BIN)/python -m pytest -q -x -m "not slurm and not slow" tests

# ruff check + ruff format --check over the package, tests and benchmarks (pre-commit runs the same
# hooks: .pre-commit-config.yaml).  LINT_PATHS narrows it, e.g. make lint LINT_PATHS=pipeline/quakescale/hpc
LINT_PATHS ?= pipeline tests benchmarks
lint: install
	$(BIN)/python -m pip install -q "ruff==0.17.6"
	$(BIN)/python -m ruff check $(LINT_PATHS)
	$(BIN)/python -m ruff format --check $(LINT_PATHS)

bench: install
	@mkdir -p bench-out
	$(BIN)/python -m pip install -q -e ".[test,bench]"   # PyPI hypodd, side by side in bench_hypodd_pypi.py
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b --quick --out bench-out/$$(basename $$b .py).json || exit 1; done

models: install   ## the published EQTransformer / PhaseNet / GPD weights, converted for SeisBench (the default picker)
	$(BIN)/quakescale models install

containers: containers/quakescale-gpu.sif containers/quakescale-cpu.sif   ## Apptainer images (needs apptainer)

containers/quakescale-%.sif: containers/%.def pyproject.toml README.md $(shell find pipeline -name '*.py')
	@command -v apptainer >/dev/null || { echo "apptainer not found: https://apptainer.org/docs/admin/main/installation.html"; exit 1; }
	apptainer build --force $@ $<

slurm-up:     ## single-node SLURM for tests (root, Debian)
	bash slurm/local/start.sh

slurm-down:
	bash slurm/local/stop.sh

clean:
	rm -rf $(DEMO_OUT) bench-out .pytest_cache
