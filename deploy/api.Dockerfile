# syntax=docker/dockerfile:1
# The HTTP API: Flask under gunicorn. It never runs the network, so torch is not installed.
#   docker build -f deploy/api.Dockerfile -t backdrop-api .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/backdrop-metrics

# A fixed numeric UID lets Kubernetes' runAsNonRoot check the user without a name lookup.
RUN useradd --create-home --uid 10001 --user-group backdrop

WORKDIR /app
COPY pyproject.toml README.md ./
COPY common/ common/
COPY api/ api/
COPY worker/ worker/
COPY pretrained/ pretrained/

# The whole package is installed (its worker/ modules are plain source), but only the `api` extra:
# the `worker` extra is what brings torch. The last command fails the build if torch got in anyway.
# data/ is LocalStorage's default root (BACKDROP_DATA_DIR, relative to /app) and must be writable.
# PROMETHEUS_MULTIPROC_DIR: gunicorn runs several processes, and prometheus_client's multiprocess mode
# keeps each one's metrics in files there, which any process's /metrics sums; it must be writable too.
RUN pip install ".[api]" \
    && rm -rf build ./*.egg-info \
    && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)" \
    && install -d -o backdrop -g backdrop /app/data "$PROMETHEUS_MULTIPROC_DIR"

USER 10001:10001
EXPOSE 8080

# python:slim has no curl; urlopen raises (non-zero exit) on a refused connection or a non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

# The metrics directory must be empty at each start (files of processes from an earlier start would
# still be counted): the shell empties it, when set, then becomes gunicorn. Setting the variable empty
# turns the multiprocess mode off (right only for --workers 1).
# api/server.py is gunicorn's configuration, as for `backdrop serve`: gevent workers of 1000 connections
# each (a slow client or a held Prefer: wait is a greenlet, not a thread), with deadlines on reading a
# request (BACKDROP_API_HEADER_TIMEOUT_SECONDS, BACKDROP_API_BODY_TIMEOUT_SECONDS,
# BACKDROP_API_BODY_MIN_RATE_BYTES).
CMD ["sh", "-c", "if [ -n \"$PROMETHEUS_MULTIPROC_DIR\" ]; then mkdir -p \"$PROMETHEUS_MULTIPROC_DIR\" && find \"$PROMETHEUS_MULTIPROC_DIR\" -mindepth 1 -delete; fi; exec gunicorn --config python:api.server --bind 0.0.0.0:8080 --workers 2 'api.app:create_app()'"]
