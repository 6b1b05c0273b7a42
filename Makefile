# One command to set up and run the pipeline, one to set up and run the tests.
#   make run     creates .venv from requirements.lock, then: snakemake --cores $(CORES)
#   make test    creates .venv, then: ruff, snakemake --lint, pytest
# Override e.g. `make run CORES=2 SNAKEMAKE_ARGS="--config inference='{limit: 1000}'"`, or
# read MNIST from a local mirror: `make run MIRROR=file://$(realpath ../shared/mnist)/`.

PYTHON ?= python3
CORES ?= 4
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Rules call `python -m cnnbench...`: the venv's python must come first on PATH.
export PATH := $(BIN):$(PATH)

.PHONY: setup run test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

run: setup
	snakemake --cores $(CORES) $(if $(MIRROR),--config "dataset={mirrors: [$(MIRROR)]}") $(SNAKEMAKE_ARGS)

lint: setup
	ruff check src tests
	ruff format --check src tests
	snakemake --lint

test: lint
	pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

bench: setup
	python -m cnnbench.bench --weights results/model/weights.npz

clean:
	rm -rf results .snakemake
