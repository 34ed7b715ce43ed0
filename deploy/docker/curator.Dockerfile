# syntax=docker/dockerfile:1.7
# The image of the curator service (query pool, synthesis, dedupe, datasets).
# Build from the repository root:
#   docker build -f deploy/docker/curator.Dockerfile -t <registry>/limi-curator:<tag> .
# It holds only limi-contract, limi-core and limi-curator with their own dependencies, in a venv on
# python:3.11-slim, and runs as uid 10001; under the chart the root filesystem is read-only and
# the process writes only to /tmp and /data (LIMI_DATA_DIR).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/limi
COPY lib/contract /src/lib/contract
COPY lib/core /src/lib/core
COPY services/curator /src/services/curator
RUN /opt/limi/bin/pip install /src/lib/contract /src/lib/core /src/services/curator \
 && /opt/limi/bin/python -c "import limi_curator.server"

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 limi \
 && useradd --system --uid 10001 --gid limi --home-dir /tmp --no-create-home --shell /usr/sbin/nologin limi
COPY --from=build /opt/limi /opt/limi
ENV PATH=/opt/limi/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    LIMI_DATA_DIR=/data/curator \
    LIMI_CURATOR_GRPC_ADDRESS=0.0.0.0:50051 \
    LIMI_CURATOR_METRICS_ADDRESS=0.0.0.0:9101
USER 10001:10001
EXPOSE 50051 9101
CMD ["python", "-m", "limi_curator"]
