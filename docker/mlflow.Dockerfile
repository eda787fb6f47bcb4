# MLflow tracking server with the PostgreSQL driver and the S3 client it needs for MinIO.
#   docker build -f docker/mlflow.Dockerfile -t ttsr-mlflow .
# The mlflow version matches the client pinned in constraints.txt.
FROM python:3.11.14-slim-bookworm

ARG MLFLOW_VERSION=3.17.2
ARG PSYCOPG2_VERSION=2.9.13
ARG BOTO3_VERSION=1.44.8

RUN pip install --no-cache-dir \
        "mlflow==${MLFLOW_VERSION}" \
        "psycopg2-binary==${PSYCOPG2_VERSION}" \
        "boto3==${BOTO3_VERSION}" \
    && useradd --create-home --uid 1000 --user-group mlflow

USER 1000:1000
WORKDIR /home/mlflow
EXPOSE 5000

# The real command line (stores, hosts, workers) is in compose.yaml / the Kubernetes Deployment.
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
