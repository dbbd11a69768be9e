# One-command entry points. Everything installs into .venv from the package registries; torch is
# pinned to the local CPU build (2.13.0) first so that pip never pulls the multi-GB CUDA wheels.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export ADVVIZ_DATA_DIR ?= $(abspath ../shared/data)
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test test-fast app train-default bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	@if [ -f .ci/app-deps.sh ]; then bash .ci/app-deps.sh $(BIN); fi
	touch $@

setup: $(VENV)/.installed  ## create .venv and install advviz with its test tools

test: setup  ## every test, real-data ones included (what CI runs)
	$(BIN)/python -m pytest -q -ra --durations=15

test-fast: setup  ## skip the tests that train on real data
	$(BIN)/python -m pytest -q -m 'not slow and not browser'

app: setup  ## the app on the embedded default (trains the default models first if models/ is empty)
	$(BIN)/advviz app

train-default: setup  ## the default LSTM baseline on SST-2 (sentence level)
	$(BIN)/advviz train --dataset sst2-sent --arch lstm --method baseline --epochs 5

bench: setup
	$(BIN)/python benchmarks/train_step.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
