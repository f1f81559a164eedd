"""``GET /metrics``: the API's Prometheus metrics, without authentication.

It is mounted beside the Flask application (``mount_metrics``), as prometheus_client's WSGI app,
so that a scrape passes through none of the API's hooks: no API key, no rate limit, and it never
counts as a request. Keep it off the public Ingress: scrape the pods directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import redis
from flask import Flask
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from api.metrics import scrape_registry

METRICS_PATH = "/metrics"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def metrics_app(client: redis.Redis) -> WsgiApp:
    """A WSGI application answering every GET with the metrics in Prometheus' text format."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD") or environ.get("PATH_INFO", "") not in ("", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found\n"]
        body = generate_latest(scrape_registry(client))
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body] if environ["REQUEST_METHOD"] == "GET" else []

    return serve


def mount_metrics(app: Flask, client: redis.Redis) -> None:
    """Answer ``/metrics`` ahead of the Flask application."""
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {METRICS_PATH: metrics_app(client)})  # type: ignore[method-assign]
