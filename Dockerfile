# Images of this repository, one build target each:
#   gateway (default)  FastAPI gateway, slim, no TensorFlow: MODEL_BACKEND=rest against TF Serving.
#                      --build-arg WITH_TENSORFLOW=true adds TensorFlow for MODEL_BACKEND=inprocess or grpc.
#   trainer            the offline pipeline on a GPU (docker compose --profile gpu run --rm trainer);
#                      --build-arg TRAINER_BASE=tensorflow/tensorflow:2.21.0 builds it for the CPU (trainer-cpu).
# Both run as an unprivileged user; the gateway has a HEALTHCHECK on /readyz.

ARG TRAINER_BASE=tensorflow/tensorflow:2.21.0-gpu

# ---- trainer: python -m offline ... on TensorFlow's image (GPU by default) ----------------------
FROM ${TRAINER_BASE} AS trainer
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HOME=/tmp
WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY model ./model
COPY offline ./offline
# The `train` extra at the locked versions: tensorflow==2.21.0 is already there; this adds keras and the rest.
RUN pip install -c requirements.lock ".[train]" \
 && useradd --system --uid 10001 --no-create-home trainer
USER 10001
ENTRYPOINT ["python", "-m", "offline"]
CMD ["--help"]

# ---- gateway -----------------------------------------------------------------------------------
FROM python:3.11-slim AS gateway
ARG WITH_TENSORFLOW=false
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 PORT=8000 MODEL_DIR=/models/vecf MODEL_BACKEND=rest LOG_FORMAT=json

WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY model/__init__.py model/contract.py model/explanation.py model/heatmap.py ./model/
COPY service ./service
# The `serve` extra at the locked versions (no TensorFlow).
RUN pip install -c requirements.lock ".[serve]" \
 && if [ "$WITH_TENSORFLOW" = "true" ]; then pip install tensorflow tensorflow-serving-api -c requirements.lock; fi

RUN useradd --system --uid 10001 --no-create-home app
USER 10001

EXPOSE 8000
# SIGTERM: uvicorn stops accepting, waits SHUTDOWN_TIMEOUT_S (20 s) for requests in flight, then the
# lifespan closes the backend and Redis. Give the container a longer stop grace period (compose: 30 s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/readyz', timeout=2)"]
CMD ["python", "-m", "service"]
