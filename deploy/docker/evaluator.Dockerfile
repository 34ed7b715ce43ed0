# syntax=docker/dockerfile:1.7
# The image of the evaluator: the evaluator service (python -m limi_evaluator) and the evaluation
# Job (python -m limi_evaluator.cli), which serves the checkpoint under test with a vLLM child
# process. Built on the official vLLM image (CUDA, torch and vLLM included); limi-contract,
# limi-core and limi-evaluator go into a venv that sees the image's packages, so that vLLM's own
# pins stay untouched.
# Build from the repository root:
#   docker build -f deploy/docker/evaluator.Dockerfile -t <registry>/limi-evaluator:<tag> .

ARG VLLM_IMAGE=vllm/vllm-openai:v0.11.0
FROM ${VLLM_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv --system-site-packages /opt/limi
COPY lib/contract /src/lib/contract
COPY lib/core /src/lib/core
COPY services/evaluator /src/services/evaluator
RUN /opt/limi/bin/pip install /src/lib/contract /src/lib/core /src/services/evaluator \
 && /opt/limi/bin/python -c "import vllm, limi_evaluator.server"
RUN groupadd --system --gid 10001 limi \
 && useradd --system --uid 10001 --gid limi --home-dir /tmp --no-create-home --shell /usr/sbin/nologin limi
ENV PATH=/opt/limi/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    HF_HOME=/tmp/huggingface \
    VLLM_NO_USAGE_STATS=1 \
    LIMI_DATA_DIR=/data/evaluator \
    LIMI_EVALUATOR_GRPC_ADDRESS=0.0.0.0:50055 \
    LIMI_EVALUATOR_METRICS_ADDRESS=0.0.0.0:9105
USER 10001:10001
EXPOSE 50055 9105
# The base image starts the vLLM server; this image starts the evaluator.
ENTRYPOINT []
CMD ["python", "-m", "limi_evaluator"]
