# syntax=docker/dockerfile:1
# Build stage: resolve the pinned dependencies into a virtual environment.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /venv
COPY pyproject.toml constraints.txt README.md ./
COPY service ./service
RUN /venv/bin/pip install -c constraints.txt .

# Runtime stage: the venv, the SQL and the migrations; no compilers, no root.
FROM python:3.11-slim
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8000
RUN useradd --system --uid 10001 --no-create-home deals
WORKDIR /app
COPY --from=build /venv /venv
COPY service ./service
COPY sql ./sql
COPY migrations ./migrations
ENV PYTHONPATH=/app
USER deals
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2).status == 200 else 1)"]
CMD ["python", "-m", "service", "serve"]
