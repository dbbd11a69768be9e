# One-command entry points. Everything installs into .venv from the package registries; torch is
# pinned to the local CPU build (2.13.0) first so that pip never pulls the multi-GB CUDA wheels.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The optional extra `textattack` pins transformers<5 (flair, which TextAttack imports, needs it), so
# its tests run in a venv of their own and the main suite keeps testing the default install.
TA_VENV := .venv-textattack
TA_BIN := $(TA_VENV)/bin
export ADVVIZ_DATA_DIR ?= $(abspath ../shared/data)
export TOKENIZERS_PARALLELISM := false

.PHONY: setup setup-textattack test test-main test-textattack test-wheel test-fast app train-default bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	@if [ -f .ci/app-deps.sh ]; then bash .ci/app-deps.sh $(BIN); fi
	touch $@

setup: $(VENV)/.installed  ## create .venv and install advviz with its test tools

$(TA_VENV)/.installed: pyproject.toml
	$(PY) -m venv $(TA_VENV)
	$(TA_BIN)/python -m pip install -q --upgrade pip
	$(TA_BIN)/pip install -q torch==2.13.0
	$(TA_BIN)/pip install -q -e '.[dev,textattack]'
	@if [ -f .ci/app-deps.sh ]; then bash .ci/app-deps.sh $(TA_BIN); fi
	touch $@

setup-textattack: $(TA_VENV)/.installed  ## create .venv-textattack: advviz with the TextAttack extra (and, where apt allows, WordNet for pwws)
	@bash .ci/wordnet.sh

test: test-wheel test-main test-textattack  ## the installed-wheel check, then every test (real-data ones included) in both venvs (what CI runs)

test-main: setup  ## the suite on the default install (transformers 5; TextAttack tests skip here)
	$(BIN)/python -m pytest -q -ra --durations=15

test-textattack: setup-textattack  ## the suite with the textattack extra (transformers 4; of the browser tests, TextAttack's)
	ADVVIZ_REQUIRE_TEXTATTACK=1 $(TA_BIN)/python -m pytest -q -ra -m 'not browser or textattack' --durations=10

test-wheel: setup  ## build sdist + wheel, install the wheel into a fresh venv, train and serve the app from an empty folder
	bash .ci/wheel-check.sh

test-fast: setup  ## skip the tests that train on real data
	$(BIN)/python -m pytest -q -m 'not slow and not browser'

app: setup  ## the app on the embedded default (trains the default models first if models/ is empty)
	$(BIN)/advviz app

train-default: setup  ## the default LSTM baseline on SST-2 (sentence level)
	$(BIN)/advviz train --dataset sst2-sent --arch lstm --method baseline --epochs 5

bench: setup
	$(BIN)/python benchmarks/train_step.py

clean:
	rm -rf $(VENV) $(TA_VENV) .pytest_cache test-artifacts
