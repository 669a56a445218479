# The MLflow server image of deploy/engines/mlflow.yaml: the project's MLflow with the PostgreSQL and S3 drivers.
# Build from the repo root:  docker build -f deploy/mlflow.Dockerfile -t dlpipe-mlflow:3.17.2 .
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.lock /tmp/requirements.lock
RUN pip install -c /tmp/requirements.lock mlflow==3.17.2 psycopg2-binary==2.9.13 boto3==1.43.117 \
    && useradd --create-home --uid 1000 mlflow
USER 1000:1000
EXPOSE 5000
ENTRYPOINT ["mlflow"]
CMD ["server", "--help"]
