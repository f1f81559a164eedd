"""How gunicorn serves the API: ``gunicorn -c python:api.server 'api.app:create_app()'``.

gevent workers, so that a client that sends slowly, or a ``Prefer: wait`` request, holds a greenlet
and not one of a few threads; deadlines on reading a request's header and body, which gunicorn's
async workers do not bound themselves; and gunicorn's own refusal of an over-long request line in
the API's JSON error format. This module is gunicorn's configuration file (its module-level names
are gunicorn settings) and holds the worker class it names.
"""

from __future__ import annotations

import socket
import time
from contextlib import nullcontext
from typing import Any

import gevent
from gunicorn.http.errors import (
    ChunkMissingTerminator,
    ExpectationFailed,
    InvalidChunkExtension,
    InvalidChunkSize,
    InvalidHeader,
    InvalidHeaderName,
    InvalidHTTPVersion,
    InvalidRequestLine,
    InvalidRequestMethod,
    LimitRequestHeaders,
    LimitRequestLine,
    ObsoleteFolding,
    UnsupportedTransferCoding,
)
from gunicorn.workers.ggevent import GeventWorker
from werkzeug.exceptions import RequestTimeout

from common.errors import HTTP_ERROR_CODES
from common.settings import get_settings

# --- gunicorn settings (command-line flags override them) ---------------------------------------
worker_class = "api.server.ApiWorker"
# Connections one worker process holds at once: idle, slow or waiting, each costs a greenlet (a few kB).
worker_connections = 1000
# Keep-alive on; how long a kept-alive connection may idle is the header deadline (ApiWorker.timeout_ctx).
keepalive = 2
graceful_timeout = 10
# gunicorn's largest request line; the API itself answers 414 above 4096 characters (api/app.py), and
# ApiWorker answers gunicorn's own 414 in the same format.
limit_request_line = 8190
accesslog = "-"
# No control socket: its default path is one per user, shared by every gunicorn on the machine.
control_socket_disable = True
# The path without its query string: signed download links must not land in a log.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'

# gunicorn's own refusals of what it cannot parse, answered in the API's format: (status, reason, message).
# The message is fixed: gunicorn's own would repeat the client's malformed line or header.
PARSE_REFUSALS: tuple[tuple[type[Exception] | tuple[type[Exception], ...], int, str, str], ...] = (
    (LimitRequestLine, 414, "URI Too Long", "the request line is too long"),
    (
        LimitRequestHeaders,
        431,
        "Request Header Fields Too Large",
        "the request has too many header fields, or one that is too large",
    ),
    (
        (
            InvalidRequestLine,
            InvalidRequestMethod,
            InvalidHTTPVersion,
            InvalidHeader,
            InvalidHeaderName,
            ObsoleteFolding,
            InvalidChunkSize,
            InvalidChunkExtension,
            ChunkMissingTerminator,
        ),
        400,
        "Bad Request",
        "the request could not be parsed as HTTP/1.1",
    ),
    (ExpectationFailed, 417, "Expectation Failed", "the only expectation understood is 100-continue"),
    (
        UnsupportedTransferCoding,
        501,
        "Not Implemented",
        "the transfer coding is not supported: send chunked, or a Content-Length",
    ),
)


class _TooSlow(Exception):
    """A body read ran past the time the minimum rate allows it (raised by a gevent timer)."""


class BodyDeadline:
    """A request's body (gunicorn's ``wsgi.input``) whose reads fail with a 408 when the client has
    sent nothing for the socket's timeout, or, with ``min_rate``, when the body has taken longer than
    ``grace`` seconds and has averaged fewer than ``min_rate`` bytes a second, so that pauses just under
    the timeout cannot hold a connection for ever. Each read may take until the moment when the bytes
    it asks for would bring the average down to the minimum. The connection is closed after the 408."""

    CHUNK = 65536  # what a read of unknown length is taken to ask for (a chunked body, say)

    def __init__(self, body: Any, request: Any, *, grace: float = 0.0, min_rate: int = 0) -> None:
        self._body = body
        self._request = request
        self._grace = grace
        self._min_rate = min_rate
        self._started = time.monotonic()
        self._received = 0
        lengths = [value for name, value in getattr(request, "headers", ()) if name == "CONTENT-LENGTH"]
        self._length = int(lengths[0]) if lengths and lengths[0].isdigit() else None

    def _refuse(self, message: str) -> RequestTimeout:
        # Where the next request would start is unknown now: answer, then close.
        self._request.must_close = True
        return RequestTimeout(message)

    def _wanted(self, size: int | None) -> int:
        left = None if self._length is None else max(0, self._length - self._received)
        if size is None or size < 0:
            return self.CHUNK if left is None else left
        return size if left is None else min(size, left)

    def _bounded(self, read: Any, size: int | None) -> Any:
        timer = None
        wanted = self._wanted(size)
        if self._min_rate and wanted > 0:  # nothing left to read (the end of a whole body) is never late
            allowed = max(self._grace, (self._received + wanted) / self._min_rate)
            remaining = self._started + allowed - time.monotonic()
            if remaining <= 0:
                raise self._refuse(self._too_slow())
            timer = gevent.Timeout(remaining, _TooSlow())
        try:
            with timer if timer is not None else nullcontext():
                data = read(size)
        except TimeoutError:
            raise self._refuse("the request body stalled: nothing was received for too long") from None
        except _TooSlow:
            raise self._refuse(self._too_slow()) from None
        self._received += sum(map(len, data)) if isinstance(data, list) else len(data)
        return data

    def _too_slow(self) -> str:
        return f"the request body arrives too slowly: under {self._min_rate} bytes a second"

    def read(self, size: int | None = None) -> bytes:
        return self._bounded(self._body.read, size)

    def readline(self, size: int | None = None) -> bytes:
        return self._bounded(self._body.readline, size)

    def readlines(self, size: int | None = None) -> list[bytes]:
        # The hint does not bound what readlines reads: it is given the time the whole rest may take.
        return self._bounded(lambda _: self._body.readlines(size), None)

    def __iter__(self) -> BodyDeadline:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def json_error(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP answer with the API's error body (``{"error": {"code", "message"}}``), closing."""
    # Imported here, in the worker process after gevent has patched the standard library.
    from common.public import ErrorBody, ErrorDetail

    body = ErrorBody(error=ErrorDetail(code=code, message=message)).model_dump_json().encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class ApiWorker(GeventWorker):
    """gunicorn's gevent worker with the API's deadlines (``BACKDROP_API_HEADER_TIMEOUT_SECONDS``,
    ``BACKDROP_API_BODY_TIMEOUT_SECONDS``, ``BACKDROP_API_BODY_MIN_RATE_BYTES``) and its JSON 414."""

    def init_process(self) -> None:
        settings = get_settings()
        self.header_timeout = settings.api_header_timeout_seconds
        self.body_timeout = settings.api_body_timeout_seconds
        self.body_min_rate = settings.api_body_min_rate_bytes
        if not self.cfg.keepalive:
            # gunicorn reads the first request outside timeout_ctx when keep-alive is off.
            raise RuntimeError("the API's header deadline needs keep-alive on (--keep-alive above 0)")
        super().init_process()

    def timeout_ctx(self) -> gevent.Timeout:
        """The deadline on reading each request's line and headers, counted from the connection's
        start or the previous answer: a connection without a whole header by then is closed."""
        return gevent.Timeout(self.header_timeout, False)

    def handle_request(self, listener_name: Any, req: Any, sock: socket.socket, addr: Any) -> None:
        # While the request is served, every read and write of the socket has the body deadline: a body
        # that stalls, or that trickles in slower than the minimum rate, is a 408, and a client that
        # stops reading the answer is dropped.
        req.body = BodyDeadline(req.body, req, grace=self.body_timeout, min_rate=self.body_min_rate)
        sock.settimeout(self.body_timeout)
        try:
            super().handle_request(listener_name, req, sock, addr)
        except TimeoutError:
            self.log.debug("closing a connection that stalled while its answer was sent")
            raise StopIteration from None
        finally:
            sock.settimeout(None)

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        """A request gunicorn refuses as malformed or too large gets the API's JSON error; anything
        else keeps gunicorn's own handling (the application's errors never reach here: Flask answers
        them)."""
        refusal = next((refusal for refusal in PARSE_REFUSALS if isinstance(exc, refusal[0])), None)
        if refusal is None:
            super().handle_error(req, client, addr, exc)
            return
        _, status, reason, message = refusal
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], type(exc).__name__)
        try:
            client.sendall(json_error(status, reason, HTTP_ERROR_CODES[status], message))
        except OSError:
            self.log.debug("the %d answer could not be sent", status)
