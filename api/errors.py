"""The one place where errors become HTTP responses: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, g, jsonify, request
from kombu.exceptions import OperationalError
from werkzeug.exceptions import HTTPException

from api.context import ctx
from common.errors import HTTP_ERROR_CODES, OTHER_HTTP_ERROR_CODE, BackdropError, QueueUnavailable

log = logging.getLogger(__name__)


# When to come back after a 409 (an Idempotency-Key in use), a 429 (too many pending jobs) or a 503 (a
# service is down): the answers that carry Retry-After.
RETRY_AFTER_SECONDS = 5
RETRY_LATER_STATUSES = (409, 429, 503)
# Longest message in an error body: a message may quote what the client sent (a key, an option's
# value), and an answer must never echo a large value back.
MAX_MESSAGE_CHARS = 300


def short_message(message: str) -> str:
    """``message``, cut to ``MAX_MESSAGE_CHARS`` with a note of how much was left out."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}... ({len(message) - MAX_MESSAGE_CHARS} more characters not shown)"


def error_response(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": short_message(message)}})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(BackdropError)
    def _backdrop_error(exc: BackdropError) -> Response:
        if exc.http_status >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        response = error_response(exc.http_status, exc.code, exc.message)
        if exc.http_status in RETRY_LATER_STATUSES:
            g.retry_after = response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = "the request body is larger than the upload limit"
            if request.is_json:
                message = f"a JSON body is limited to {ctx().settings.max_json_body_bytes} bytes"
        response = error_response(status, HTTP_ERROR_CODES.get(status, OTHER_HTTP_ERROR_CODE), message)
        for name, value in exc.get_headers():
            if name.lower() != "content-type":  # e.g. Allow on a 405
                response.headers[name] = value
        return response

    @app.errorhandler(redis.RedisError)
    @app.errorhandler(OperationalError)  # kombu's, when a message cannot be sent to the broker
    def _redis_down(exc: Exception) -> Response:
        log.warning("redis unavailable: %s", exc)
        return _backdrop_error(QueueUnavailable("the job queue is unavailable, try again later"))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "an unexpected error occurred")
