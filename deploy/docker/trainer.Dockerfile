# syntax=docker/dockerfile:1.7
# The image of the trainer (SFT with transformers and DeepSpeed): the training Job
# (python -m limi_trainer.cli) and the trainer service (python -m limi_trainer).
# Build from the repository root:
#   docker build -f deploy/docker/trainer.Dockerfile -t <registry>/limi-trainer:<tag> .
# CUDA devel base: DeepSpeed compiles its fused and CPU-offload optimizer ops with nvcc and g++
# on first use, into TORCH_EXTENSIONS_DIR (the chart points it at the data volume so that later
# runs reuse them). torch is installed first and pinned, then limi-contract, limi-core and
# limi-trainer with their own dependencies. Runs as uid 10001.

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04
FROM ${CUDA_IMAGE}
ARG TORCH_VERSION=2.13.0
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential ninja-build \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/limi && /opt/limi/bin/pip install torch==${TORCH_VERSION}
COPY lib/contract /src/lib/contract
COPY lib/core /src/lib/core
COPY services/trainer /src/services/trainer
RUN DS_BUILD_OPS=0 /opt/limi/bin/pip install /src/lib/contract /src/lib/core /src/services/trainer \
 && /opt/limi/bin/python -c "import torch, deepspeed, transformers, limi_trainer.server; assert torch.__version__.startswith('${TORCH_VERSION}')"
RUN groupadd --system --gid 10001 limi \
 && useradd --system --uid 10001 --gid limi --home-dir /tmp --no-create-home --shell /usr/sbin/nologin limi
ENV PATH=/opt/limi/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    TORCH_EXTENSIONS_DIR=/tmp/torch_extensions \
    HF_HOME=/tmp/huggingface \
    TOKENIZERS_PARALLELISM=false \
    LIMI_DATA_DIR=/data/trainer \
    LIMI_TRAINER_GRPC_ADDRESS=0.0.0.0:50054 \
    LIMI_TRAINER_METRICS_ADDRESS=0.0.0.0:9104
USER 10001:10001
EXPOSE 50054 9104
CMD ["python", "-m", "limi_trainer"]
