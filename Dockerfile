# syntax=docker/dockerfile:1
# Build stage: build the service's wheel, with sql/ and migrations/ inside it
# as service.sql and service.migrations. Nothing else leaves this stage.
FROM docker.io/library/python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY sql ./sql
COPY migrations ./migrations
RUN python -m venv /build-venv \
    && /build-venv/bin/pip wheel --no-deps --wheel-dir /dist .

# Runtime stage: a venv with that wheel alone and its dependencies pinned by
# constraints.txt. No source tree, no PYTHONPATH, no compilers, no root.
FROM docker.io/library/python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 deals \
    && useradd --system --uid 10001 --gid 10001 --no-create-home deals
COPY constraints.txt /tmp/constraints.txt
COPY --from=build /dist/ /tmp/dist/
RUN python -m venv /venv \
    && /venv/bin/pip install -c /tmp/constraints.txt /tmp/dist/*.whl \
    && rm -rf /tmp/dist /tmp/constraints.txt
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8000
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Probes the port the service was told to use, so a container run with
# API_PORT=8765 reports healthy too.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:' + os.environ.get('API_PORT', '8000') + '/health/live'; sys.exit(0 if urllib.request.urlopen(url, timeout=2).status == 200 else 1)"]
CMD ["deals", "serve"]
