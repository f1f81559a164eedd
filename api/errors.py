"""The one place where errors become HTTP responses: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException

from common.errors import HTTP_ERROR_CODES, OTHER_HTTP_ERROR_CODE, BackdropError, QueueUnavailable

log = logging.getLogger(__name__)


# When to come back after a 429 (too many pending jobs) or a 503 (a service is down).
RETRY_AFTER_SECONDS = 5


def error_response(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(BackdropError)
    def _backdrop_error(exc: BackdropError) -> Response:
        if exc.http_status >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        response = error_response(exc.http_status, exc.code, exc.message)
        if exc.http_status in (429, 503):
            g.retry_after = response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = "the request body is larger than the upload limit"
        response = error_response(status, HTTP_ERROR_CODES.get(status, OTHER_HTTP_ERROR_CODE), message)
        for name, value in exc.get_headers():
            if name.lower() != "content-type":  # e.g. Allow on a 405
                response.headers[name] = value
        return response

    @app.errorhandler(redis.RedisError)
    def _redis_down(exc: redis.RedisError) -> Response:
        log.warning("redis unavailable: %s", exc)
        return _backdrop_error(QueueUnavailable("the job queue is unavailable, try again later"))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "an unexpected error occurred")
