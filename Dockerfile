# Painting Studio image. BASE picks the runtime:
#   docker build .                                                  (CPU, python:3.11-slim)
#   docker build --build-arg BASE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 \
#                --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 .   (GPU)
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Bound to 0.0.0.0 inside, the studio answers only the Host names in STUDIO_ALLOWED_HOSTS: by
# default those of a port published on the host's loopback; set it to the names people use.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    STUDIO_DATA_DIR=/data \
    STUDIO_MODELS_DIR=/app/models \
    STUDIO_ALLOWED_HOSTS=localhost,127.0.0.1

# CUDA base images ship no Python 3.11; python:3.11-slim already has it.
RUN if ! command -v python3.11 >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends software-properties-common \
        && add-apt-repository -y ppa:deadsnakes/ppa \
        && apt-get update \
        && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
# torch first, from the index that matches BASE, so the layer is cached apart from the code.
RUN pip install --index-url ${TORCH_INDEX} "torch>=2.4"
COPY pyproject.toml ./
COPY app ./app
COPY templates ./templates
COPY static ./static
COPY migrations ./migrations
COPY alembic.ini ./
COPY models ./models
# Editable: templates, static and migrations are found relative to the repository root.
RUN pip install -e .

RUN useradd --create-home studio && mkdir -p /data && chown studio /data
USER studio
VOLUME ["/data"]
EXPOSE 8000
CMD ["studio", "serve", "--host", "0.0.0.0"]
