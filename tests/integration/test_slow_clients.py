"""Clients that send slowly, or stall, cannot take the API down: gunicorn runs gevent workers, so a slow
connection or a ``Prefer: wait`` holds a greenlet and not a thread, a header must arrive within
BACKDROP_API_HEADER_TIMEOUT_SECONDS, a body must not pause longer than BACKDROP_API_BODY_TIMEOUT_SECONDS
nor, once it has taken longer than that, average under BACKDROP_API_BODY_MIN_RATE_BYTES a second,
and gunicorn's own refusals (414, 431, 400, 417, 501) are in the API's JSON format."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from common import keyspace
from common.api_keys import ApiKeyStore
from tests.integration.stack import Stack, http, multipart
from tests.integration.test_service import rgba_photo

SLOW_CONNECTIONS = 64
SLOW_HEADER = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: one-byte-at-a-time\r\n"
DRIP_PAUSE = 0.5  # between two bytes of each slow connection: the header takes 37 s, never finished
GUARD = 60  # seconds: a failure guard, never a measure
MIN_RATE = 8000  # bytes a second a body must average once it has taken longer than the body timeout (1 s)


def api_address(stack: Stack) -> tuple[str, int]:
    host, port = stack.api_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def connect(stack: Stack) -> socket.socket:
    sock = socket.create_connection(api_address(stack), timeout=GUARD)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (read without waiting)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the guard runs out)."""
    sock.settimeout(GUARD)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


class SlowClients:
    """``count`` connections, each sending the same header one byte every DRIP_PAUSE seconds (at most
    len(SLOW_HEADER) bytes each, never its end) until ``stop()``."""

    def __init__(self, stack: Stack, count: int) -> None:
        self.sockets = [connect(stack) for _ in range(count)]
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _drip(self) -> None:
        for byte in SLOW_HEADER:
            if self._stop.wait(DRIP_PAUSE):
                return
            for sock in self.sockets:
                sock.sendall(bytes([byte]))
            self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(GUARD)

    def close(self) -> None:
        self.stop()
        for sock in self.sockets:
            sock.close()


@pytest.fixture(scope="module")
def slow_stack(stack_factory: Callable[..., Stack]) -> Stack:
    """S3 storage and a worker, so that a job goes through boto3, Redis and Celery in a gevent worker."""
    stack = stack_factory("s3")
    stack.start_worker(concurrency=2)
    # A header deadline past the test's length: the slow connections must be held, not dropped.
    stack.start_api(BACKDROP_API_HEADER_TIMEOUT_SECONDS="120")
    return stack


@pytest.fixture(scope="module")
def strict_stack(stack_factory: Callable[..., Stack]) -> Stack:
    """No worker (a held wait lasts all its seconds) and short read deadlines."""
    stack = stack_factory("local")
    stack.start_api(
        BACKDROP_API_HEADER_TIMEOUT_SECONDS="1",
        BACKDROP_API_BODY_TIMEOUT_SECONDS="1",
        BACKDROP_API_BODY_MIN_RATE_BYTES=str(MIN_RATE),
    )
    return stack


@pytest.fixture
def slow_clients(slow_stack: Stack) -> Iterator[Callable[[int], SlowClients]]:
    with ExitStack() as cleanup:

        def open_slow(count: int) -> SlowClients:
            clients = SlowClients(slow_stack, count)
            cleanup.callback(clients.close)
            return clients

        yield open_slow


def test_the_api_answers_while_64_connections_send_their_headers_a_byte_at_a_time(
    slow_stack: Stack, slow_clients: Callable[[int], SlowClients]
) -> None:
    clients = slow_clients(SLOW_CONNECTIONS)
    deadline = time.monotonic() + GUARD
    while clients.sent < 2 and time.monotonic() < deadline:  # every connection has begun its header
        time.sleep(0.05)
    health = http("GET", f"{slow_stack.api_url}/healthz")
    created = slow_stack.submit(rgba_photo(3))
    assert (health.status, created.status) == (200, 202), created.body
    job = slow_stack.wait_for(created.json()["id"], timeout=GUARD)
    assert job["status"] == "succeeded", job
    assert slow_stack.download(job["results"]["composite"]["url"]).status == 200
    assert clients.sent < len(SLOW_HEADER)  # still in the middle of their headers...
    assert not any(closed_by_server(sock) for sock in clients.sockets)  # ...and held, not dropped


def test_a_header_not_complete_within_its_deadline_is_closed_without_an_answer(strict_stack: Stack) -> None:
    with connect(strict_stack) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        # Still sending (so no idle timeout would fire), a byte every 0.2 s, for at most 50 bytes.
        for byte in b"X-Slow: " + b"a" * 42:
            if closed_by_server(sock):
                break
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.2)
        assert read_until_closed(sock) == b""


def test_a_body_that_stalls_is_answered_408_and_closed(strict_stack: Stack) -> None:
    body, content_type = multipart({"background": "red"}, {"image": ("photo.png", rgba_photo(4))})
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {strict_stack.token}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with connect(strict_stack) as sock:
        sock.sendall(head + body[: len(body) // 2])  # then nothing more
        answer = read_until_closed(sock)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer[:300]
    headers, _, payload = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert json.loads(payload)["error"]["code"] == "request_timeout"
    assert http("GET", f"{strict_stack.api_url}/healthz").status == 200


def send_body_in_pieces(stack: Stack, piece: int, pause: float) -> tuple[bytes, int]:
    """POST a job whose body goes ``piece`` bytes at a time, ``pause`` seconds apart (each pause under
    the body timeout), stopping early when the server answers; (the answer, the body bytes sent)."""
    body, content_type = multipart({"background": "red"}, {"image": ("photo.png", rgba_photo(5))})
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {stack.token}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sent = 0
    with connect(stack) as sock:
        sock.sendall(head)
        while sent < len(body):  # at most len(body) / piece pieces
            readable, _, _ = select.select([sock], [], [], pause)
            if readable:  # answered before the body was complete
                break
            try:
                sock.sendall(body[sent : sent + piece])
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += piece
        return read_until_closed(sock), min(sent, len(body))


def test_a_body_that_trickles_in_under_the_minimum_rate_is_answered_408_and_closed(strict_stack: Stack) -> None:
    # 200 bytes every 0.4 s: never a pause the body timeout sees, but 500 bytes a second, under MIN_RATE.
    answer, sent = send_body_in_pieces(strict_stack, piece=200, pause=0.4)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer[:300]
    error = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
    assert error["code"] == "request_timeout"
    assert "too slowly" in error["message"]
    # Refused when the read of the whole ~49 kB body could no longer average MIN_RATE (~6 s), with under
    # half of it sent.
    assert sent < len(rgba_photo(5)) // 2


def test_a_body_that_takes_longer_than_the_timeout_at_a_fair_rate_is_accepted(strict_stack: Stack) -> None:
    # 12 kB every 0.5 s: 24 kB a second, three times MIN_RATE, the whole body taking longer than the
    # body timeout (1 s: at least three pauses).
    answer, sent = send_body_in_pieces(strict_stack, piece=12288, pause=0.5)
    assert answer.startswith(b"HTTP/1.1 202"), answer[:300]
    assert sent > 3 * 12288


def test_waits_of_one_key_leave_other_clients_and_health_checks_answering(strict_stack: Stack) -> None:
    waits = 8  # the per-key cap
    events: list[str] = []
    lock = threading.Lock()

    def held_submit(seed: int) -> None:
        answer = strict_stack.submit(rgba_photo(seed), headers={"Prefer": "wait=3"})
        with lock:
            events.append("held" if answer.headers.get("preference-applied") == "wait=3" else f"{answer.status}")

    threads = [threading.Thread(target=held_submit, args=(seed,)) for seed in range(waits)]
    for thread in threads:
        thread.start()
    owner = ApiKeyStore(strict_stack.redis).authenticate(strict_stack.token or "").id
    waiting = keyspace.WAITING.format(owner=owner)
    deadline = time.monotonic() + GUARD
    while strict_stack.redis.zcard(waiting) < waits and time.monotonic() < deadline:
        time.sleep(0.05)
    health = http("GET", f"{strict_stack.api_url}/healthz")
    other = strict_stack.submit(rgba_photo(99), token=strict_stack.new_key("another client"))
    with lock:
        events.append(f"others {health.status} {other.status}")
    for thread in threads:
        thread.join(GUARD)
    assert events[0] == "others 200 202"  # answered while every wait was held
    assert events[1:] == ["held"] * waits


def test_a_request_line_past_gunicorns_limit_is_a_json_414(strict_stack: Stack) -> None:
    answer = http("GET", f"{strict_stack.api_url}/healthz?{'a' * 9000}")
    assert answer.status == 414
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "uri_too_long"


def raw_answer(stack: Stack, request: bytes) -> tuple[int, dict[str, str], dict]:
    """Send bytes as they are (no client library would send these) and parse the one answer."""
    with connect(stack) as sock:
        sock.sendall(request)
        head, _, body = read_until_closed(sock).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431,
         "request_header_fields_too_large"),
        (b"GET /healthz HTTP/9.9\r\nHost: localhost\r\n\r\n", 400, "bad_request"),
        (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nBad Header Name: x\r\n\r\n", 400, "bad_request"),
        (b"POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nExpect: aaaa-please\r\nContent-Length: 0\r\n\r\n", 417,
         "expectation_failed"),
        (b"POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: aaaa, chunked\r\n\r\n0\r\n\r\n", 501,
         "not_implemented"),
    ],
    ids=["header-too-large", "bad-version", "bad-header-name", "unknown-expectation", "unknown-transfer-coding"],
)  # fmt: skip
def test_requests_gunicorn_cannot_parse_get_json_errors_that_do_not_repeat_them(
    strict_stack: Stack, request_bytes: bytes, status: int, code: str
) -> None:
    answer_status, headers, body = raw_answer(strict_stack, request_bytes)
    assert answer_status == status
    assert headers["content-type"] == "application/json"
    assert body["error"]["code"] == code
    assert "aaaa" not in body["error"]["message"] and "Bad Header" not in body["error"]["message"]
