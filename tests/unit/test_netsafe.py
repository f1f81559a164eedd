"""SSRF-safe fetching: address checks, and requests against a real local HTTP server (no internet needed).

The positive paths run with allow_private=True, since the only server a test can reach is on 127.0.0.1.
The paths that must reach a *public* address use two fakes at the edges of the code under test, never
inside it: a resolver (DNS), and ``socket.create_connection`` replaced by a tiny routing table that
carries connections for one documentation-free public address (93.184.216.34) to the local server.
Everything between them (parsing, checking, pinning, Host header, redirects, limits) is the real code.
"""

from __future__ import annotations

import errno
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from common import netsafe
from common.errors import FetchFailed, InvalidInput, UnsafeURL
from common.netsafe import FetchLimits, check_address, check_url, fetch_bytes, safe_request

PUBLIC_IP = "93.184.216.34"  # a globally routable address; tests route it to the local server
BODY = b"hello, portrait"
BIG = 2000
SMALL_LIMIT = 1000


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    """One route per behaviour the fetcher must handle."""

    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, status: int, location: str) -> None:
        self._send(status, b"moved", {"Location": location})

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path
        with self.server.lock:
            self.server.seen.append(Seen(self.command, path, {k.lower(): v for k, v in self.headers.items()}, body))
        port = self.server.server_address[1]
        if path == "/ok":
            self._send(200, BODY, {"Content-Type": "image/jpeg", "X-Custom": "yes"})
        elif path == "/big-declared":
            self._send(200, b"x" * BIG)
        elif path == "/big-streamed":  # no length: the body ends when the connection closes
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"x" * BIG)
        elif path == "/big-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(BIG // 100):
                self.wfile.write(b"64\r\n" + b"x" * 100 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/lying-length":  # promises more than it sends, then closes
            self.send_response(200)
            self.send_header("Content-Length", "500")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"x" * 10)
        elif path == "/slow":  # headers, then nothing until the test ends
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.flush()
            self.server.release.wait(10)
        elif path == "/trickle":  # each read is quick, the whole body is not
            self.send_response(200)
            self.send_header("Content-Length", "60")
            self.end_headers()
            for _ in range(60):
                if self.server.release.wait(0.05):
                    break
                self.wfile.write(b"x")
                self.wfile.flush()
        elif path.startswith("/hops/"):
            left = int(path.rsplit("/", 1)[1])
            if left == 0:
                self._send(200, b"landed")
            else:
                self._redirect(302, f"/hops/{left - 1}")
        elif path == "/to-loopback":
            self._redirect(302, f"http://127.0.0.1:{port}/secret")
        elif path == "/to-internal":
            self._redirect(302, f"http://internal.example:{port}/secret")
        elif path == "/to-metadata":
            self._redirect(301, "http://169.254.169.254/latest/meta-data/")
        elif path == "/to-file":
            self._redirect(302, "file:///etc/passwd")
        elif path == "/to-other-origin":
            self._redirect(302, f"http://other.example:{port}/ok")
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            if status in netsafe.REDIRECT_STATUSES:
                self._redirect(status, "/ok")
            else:
                self._send(status, b"status body")
        else:
            self._send(404, b"not found")

    do_GET = do_POST = do_PUT = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.release = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up on purpose (size cap, deadline) is expected here."""


@dataclass
class LocalServer:
    server: _Server

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def seen(self) -> list[Seen]:
        with self.server.lock:
            return list(self.server.seen)

    def paths(self) -> list[str]:
        return [s.path for s in self.seen()]


@pytest.fixture
def local() -> Iterator[LocalServer]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield LocalServer(server)
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class FakeNetwork:
    """Replaces socket.create_connection: records every attempt; routes listed addresses to 127.0.0.1."""

    routes: set[str] = field(default_factory=set)
    attempts: list[tuple[str, int]] = field(default_factory=list)


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> FakeNetwork:
    fake = FakeNetwork()
    real = socket.create_connection

    def create_connection(address: tuple[str, int], timeout: float | None = None, *args: Any, **kw: Any) -> Any:
        host, port = address[0], address[1]
        fake.attempts.append((host, port))
        if host in fake.routes:
            return real(("127.0.0.1", port), timeout)
        raise OSError(errno.ENETUNREACH, f"test network: no route to {host}")

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return fake


class SpyResolver:
    """A resolver from a table, or a sequence of answers per name; counts its calls."""

    def __init__(self, table: dict[str, list[str] | list[list[str]]]) -> None:
        self.table = table
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = self.table[host]
        if answer and isinstance(answer[0], list):  # successive answers: DNS rebinding
            n = sum(1 for name, _ in self.calls if name == host)
            return list(answer[min(n, len(answer)) - 1])
        return list(answer)  # type: ignore[arg-type]

    def hosts(self) -> list[str]:
        return [host for host, _ in self.calls]


def _fast(**kw: Any) -> FetchLimits:
    return FetchLimits(**{"timeout": 5.0, **kw})


# --- check_address ----------------------------------------------------------------------------

REFUSED = [
    "127.0.0.1",
    "127.255.255.254",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.1.1",
    "100.64.0.1",
    "0.0.0.0",
    "0.1.2.3",
    "255.255.255.255",
    "240.0.0.1",
    "224.0.0.1",
    "239.255.255.250",
    "192.0.2.1",
    "198.18.0.1",
    "::",
    "::1",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001::1",  # Teredo
    "2001:db8::1",
    "fd00:ec2::254",
    "fd00:ec2::23",
    "169.254.170.2",
    "100.100.100.200",
    "192.0.0.192",
]
ACCEPTED = [
    "8.8.8.8",
    "1.1.1.1",
    PUBLIC_IP,
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize("ip", REFUSED)
def test_non_public_addresses_are_refused(ip: str) -> None:
    with pytest.raises(UnsafeURL) as info:
        check_address(ip)
    assert info.value.code == "unsafe_url" and info.value.http_status == 422
    assert isinstance(info.value, InvalidInput)


@pytest.mark.parametrize("ip", ACCEPTED)
def test_public_addresses_are_accepted(ip: str) -> None:
    check_address(ip)
    check_address(ip, allow_private=True)


@pytest.mark.parametrize(
    "ip",
    ["127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.1.1", "::1", "fe80::1", "fc00::1"],
)
def test_allow_private_opens_internal_ranges(ip: str) -> None:
    with pytest.raises(UnsafeURL):
        check_address(ip)
    check_address(ip, allow_private=True)
    check_address(f"::ffff:{ip}" if "." in ip else ip, allow_private=True)


@pytest.mark.parametrize(
    "ip",
    [
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "fd00:ec2::254",
        "169.254.170.2",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "240.0.0.1",
        "2001:db8::1",
    ],
)
def test_allow_private_never_opens_metadata_or_special_addresses(ip: str) -> None:
    with pytest.raises(UnsafeURL):
        check_address(ip, allow_private=True)


def test_metadata_refusal_says_so() -> None:
    with pytest.raises(UnsafeURL, match="metadata"):
        check_address("169.254.169.254", allow_private=True)


@pytest.mark.parametrize("value", ["localhost", "example.com", "", "999.1.1.1", "2130706433"])
def test_check_address_refuses_non_addresses(value: str) -> None:
    with pytest.raises(UnsafeURL, match="not an IP address"):
        check_address(value, allow_private=True)


# --- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/photo.jpg",
        "gopher://example.com:70/_GET",
        "dict://example.com:11211/stat",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "//example.com/photo.jpg",
        "/photo.jpg",
        "",
        "http://",
        "http:///photo.jpg",
        "http://user:pass@example.com/photo.jpg",
        "http://user@example.com/photo.jpg",
        "http://example.com@127.0.0.1/photo.jpg",
        "https://:secret@example.com/",
        "http://example.com:99999/",
        "http://example.com:0/",
        "http://exa mple.com/",
        "http://example.com/a b",
        "http://example.com/\r\nX-Injected: 1",
    ],
)
def test_urls_that_are_not_fetchable_are_refused_before_any_lookup(url: str, network: FakeNetwork) -> None:
    resolver = SpyResolver({"example.com": [PUBLIC_IP]})
    with pytest.raises(UnsafeURL):
        safe_request("GET", url, resolver=resolver, allow_private=True)
    with pytest.raises(UnsafeURL):
        check_url(url)
    assert resolver.calls == [] and network.attempts == []


def test_check_url_accepts_http_and_https() -> None:
    for url in ["http://example.com/a.jpg?x=1", "HTTPS://Example.COM:8443/a.jpg", "http://[2606:4700::1]/"]:
        assert check_url(url) == url


def detailed_fetch(url: str, **kwargs: Any) -> bytes:
    """``safe_request``'s GET, whose errors say what went wrong (``fetch_bytes`` tells users less)."""
    return safe_request("GET", url, **kwargs).body


# --- fetching from the local server -----------------------------------------------------------


def test_fetches_a_body(local: LocalServer) -> None:
    assert fetch_bytes(local.url("/ok"), allow_private=True, limits=_fast()) == BODY
    response = safe_request("GET", local.url("/ok"), allow_private=True, limits=_fast())
    assert response.status == 200 and response.body == BODY
    assert response.url == local.url("/ok")
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["x-custom"] == "yes"
    assert all(name == name.lower() for name in response.headers)
    seen = local.seen()[-1]
    assert seen.method == "GET" and seen.path == "/ok"
    assert seen.headers["host"] == f"127.0.0.1:{local.port}"
    assert seen.headers["user-agent"] == netsafe.USER_AGENT


def test_http_errors_are_returned_by_safe_request_and_raised_by_fetch_bytes(local: LocalServer) -> None:
    response = safe_request("GET", local.url("/status/404"), allow_private=True, limits=_fast())
    assert response.status == 404 and response.body == b"status body"
    for status in (404, 500):
        with pytest.raises(FetchFailed, match=f"HTTP {status}") as info:
            fetch_bytes(local.url(f"/status/{status}"), allow_private=True, limits=_fast())
        assert info.value.code == "fetch_failed" and info.value.http_status == 422
        assert "/status" not in info.value.message  # no path or query (they may carry tokens) in messages
        assert info.value.transient is (status == 500)  # a 404 stays a 404; a 500 may pass


def test_a_declared_length_above_the_cap_is_refused_at_once(local: LocalServer) -> None:
    with pytest.raises(FetchFailed, match=f"{BIG} bytes, above the limit of {SMALL_LIMIT}") as info:
        detailed_fetch(local.url("/big-declared"), allow_private=True, limits=_fast(max_bytes=SMALL_LIMIT))
    assert not info.value.transient  # too big now, too big later
    assert fetch_bytes(local.url("/big-declared"), allow_private=True, limits=_fast(max_bytes=BIG)) == b"x" * BIG


@pytest.mark.parametrize("route", ["/big-streamed", "/big-chunked"])
def test_a_body_growing_past_the_cap_is_refused(local: LocalServer, route: str) -> None:
    with pytest.raises(FetchFailed, match="larger than the limit"):
        detailed_fetch(local.url(route), allow_private=True, limits=_fast(max_bytes=SMALL_LIMIT))
    assert fetch_bytes(local.url(route), allow_private=True, limits=_fast(max_bytes=BIG)) == b"x" * BIG


def test_a_truncated_body_is_a_failure(local: LocalServer) -> None:
    with pytest.raises(FetchFailed, match="closed before the end"):
        detailed_fetch(local.url("/lying-length"), allow_private=True, limits=_fast())


def test_a_stalled_server_times_out(local: LocalServer) -> None:
    with pytest.raises(FetchFailed) as info:
        detailed_fetch(local.url("/slow"), allow_private=True, limits=FetchLimits(timeout=0.3))
    assert info.value.transient


def test_a_trickling_server_hits_the_total_deadline(local: LocalServer) -> None:
    # Every byte arrives well within the 0.5 s per-read timeout, the 60 bytes take about 3 s.
    with pytest.raises(FetchFailed, match=r"within 0\.5 s"):
        detailed_fetch(local.url("/trickle"), allow_private=True, limits=FetchLimits(timeout=0.5))


def test_an_unreachable_port_fails(local: LocalServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FetchFailed) as info:
        detailed_fetch(f"http://127.0.0.1:{port}/", allow_private=True, limits=_fast())
    assert info.value.transient


def test_an_unknown_host_fails(network: FakeNetwork) -> None:
    with pytest.raises(FetchFailed, match=r"cannot resolve nowhere\.example"):
        detailed_fetch("http://nowhere.example/", resolver=SpyResolver({}))
    with pytest.raises(FetchFailed, match="no addresses"):
        detailed_fetch("http://empty.example/", resolver=SpyResolver({"empty.example": []}))
    assert network.attempts == []


# --- redirects --------------------------------------------------------------------------------


def test_redirects_within_the_limit_are_followed(local: LocalServer) -> None:
    response = safe_request("GET", local.url("/hops/3"), allow_private=True, limits=_fast(max_redirects=3))
    assert response.status == 200 and response.body == b"landed"
    assert response.url == local.url("/hops/0")
    assert local.paths() == ["/hops/3", "/hops/2", "/hops/1", "/hops/0"]


def test_redirects_over_the_limit_are_refused(local: LocalServer) -> None:
    with pytest.raises(FetchFailed, match="more than 3 redirects"):
        detailed_fetch(local.url("/hops/4"), allow_private=True, limits=_fast(max_redirects=3))
    assert local.paths() == ["/hops/4", "/hops/3", "/hops/2", "/hops/1"]
    with pytest.raises(FetchFailed, match="more than 0 redirects"):
        detailed_fetch(local.url("/hops/1"), allow_private=True, limits=_fast(max_redirects=0))


def test_redirects_can_be_left_unfollowed(local: LocalServer) -> None:
    response = safe_request("GET", local.url("/hops/2"), allow_private=True, follow_redirects=False, limits=_fast())
    assert response.status == 302 and response.headers["location"] == "/hops/1"
    assert response.body == b"moved"
    assert local.paths() == ["/hops/2"]


@pytest.mark.parametrize(
    ("status", "method", "body"),
    [(301, "GET", None), (302, "GET", None), (303, "GET", None), (307, "POST", b"payload"), (308, "POST", b"payload")],
)
def test_a_post_redirect_switches_to_get_except_307_and_308(
    local: LocalServer, status: int, method: str, body: bytes | None
) -> None:
    response = safe_request(
        "POST",
        local.url(f"/status/{status}"),
        body=b"payload",
        headers={"Content-Type": "application/json"},
        allow_private=True,
        limits=_fast(),
    )
    assert response.status == 200 and response.body == BODY
    first, second = local.seen()
    assert (first.method, first.body) == ("POST", b"payload")
    assert second.path == "/ok" and second.method == method
    assert second.body == (body or b"")
    assert ("content-type" in second.headers) == (body is not None)


def test_a_303_turns_a_put_into_a_get(local: LocalServer) -> None:
    safe_request("PUT", local.url("/status/303"), body=b"x", allow_private=True, limits=_fast())
    assert [s.method for s in local.seen()] == ["PUT", "GET"]


def test_credentials_do_not_follow_a_redirect_to_another_origin(local: LocalServer) -> None:
    resolver = SpyResolver({"first.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
    safe_request(
        "GET",
        local.url("/to-other-origin", host="first.example"),
        headers={"Authorization": "Bearer secret", "X-Trace": "1"},
        allow_private=True,
        resolver=resolver,
        limits=_fast(),
    )
    first, second = local.seen()
    assert first.headers["authorization"] == "Bearer secret"
    assert "authorization" not in second.headers and second.headers["x-trace"] == "1"
    assert second.headers["host"] == f"other.example:{local.port}"
    assert resolver.hosts() == ["first.example", "other.example"]


def test_a_redirect_to_another_scheme_is_refused(local: LocalServer) -> None:
    with pytest.raises(UnsafeURL, match="only http and https"):
        detailed_fetch(local.url("/to-file"), allow_private=True, limits=_fast())


def test_a_redirect_to_metadata_is_refused_even_with_private_allowed(local: LocalServer, network: FakeNetwork) -> None:
    network.routes.add("127.0.0.1")
    with pytest.raises(UnsafeURL, match="metadata"):
        detailed_fetch(local.url("/to-metadata"), allow_private=True, limits=_fast())
    assert network.attempts == [("127.0.0.1", local.port)]


# --- refusals without private addresses -------------------------------------------------------


def test_loopback_is_refused_and_never_contacted(local: LocalServer, network: FakeNetwork) -> None:
    network.routes.add("127.0.0.1")
    for url in [local.url("/ok"), local.url("/ok", host="[::1]"), local.url("/ok", host="[::ffff:127.0.0.1]")]:
        with pytest.raises(UnsafeURL, match="loopback"):
            detailed_fetch(url)
    assert network.attempts == []
    assert local.seen() == []


def test_metadata_is_refused_without_any_connection_attempt(network: FakeNetwork) -> None:
    resolver = SpyResolver({})
    for allow_private in (False, True):
        with pytest.raises(UnsafeURL, match="metadata"):
            detailed_fetch("http://169.254.169.254/latest/meta-data", allow_private=allow_private, resolver=resolver)
        with pytest.raises(UnsafeURL, match="metadata"):
            detailed_fetch("http://[fd00:ec2::254]/latest/meta-data", allow_private=allow_private, resolver=resolver)
    assert resolver.calls == []  # an IP literal is checked as it is, not looked up
    assert network.attempts == []


@pytest.mark.parametrize("answer", [["10.0.0.5"], [PUBLIC_IP, "10.0.0.5"], ["fd00::5", PUBLIC_IP], ["not-an-ip"]])
def test_a_name_resolving_to_a_private_address_is_refused(network: FakeNetwork, answer: list[str]) -> None:
    network.routes.add(PUBLIC_IP)
    resolver = SpyResolver({"images.example": answer})
    with pytest.raises(UnsafeURL, match=r"images\.example") as info:
        detailed_fetch("http://images.example/photo.jpg", resolver=resolver)
    assert "10.0.0.5" not in info.value.message  # the message names the host, not the internal address
    assert resolver.hosts() == ["images.example"]
    assert network.attempts == []


# --- pinning: the connection goes to the checked address --------------------------------------


def test_the_connection_goes_to_the_resolved_address_with_the_original_host(local: LocalServer) -> None:
    resolver = SpyResolver({"public.example": ["127.0.0.1"]})
    body = fetch_bytes(local.url("/ok", host="public.example"), allow_private=True, resolver=resolver, limits=_fast())
    assert body == BODY
    assert resolver.calls == [("public.example", local.port)]
    assert local.seen()[0].headers["host"] == f"public.example:{local.port}"


def test_dns_rebinding_cannot_swap_the_address(local: LocalServer, network: FakeNetwork) -> None:
    # The first answer is public; any later lookup would say 127.0.0.1. The fetch must use the first.
    network.routes.add(PUBLIC_IP)
    resolver = SpyResolver({"public.example": [[PUBLIC_IP], ["127.0.0.1"]]})
    body = fetch_bytes(local.url("/ok", host="public.example"), resolver=resolver, limits=_fast())
    assert body == BODY
    assert resolver.calls == [("public.example", local.port)]
    assert network.attempts == [(PUBLIC_IP, local.port)]
    assert local.seen()[0].headers["host"] == f"public.example:{local.port}"


def test_each_address_of_a_name_is_tried_in_order(local: LocalServer, network: FakeNetwork) -> None:
    network.routes.add(PUBLIC_IP)
    resolver = SpyResolver({"public.example": ["2606:4700:4700::1111", PUBLIC_IP]})
    assert fetch_bytes(local.url("/ok", host="public.example"), resolver=resolver, limits=_fast()) == BODY
    assert network.attempts == [("2606:4700:4700::1111", local.port), (PUBLIC_IP, local.port)]


def test_a_redirect_to_loopback_is_refused(local: LocalServer, network: FakeNetwork) -> None:
    network.routes.update({PUBLIC_IP, "127.0.0.1"})
    resolver = SpyResolver({"public.example": [PUBLIC_IP]})
    with pytest.raises(UnsafeURL, match="loopback"):
        detailed_fetch(local.url("/to-loopback", host="public.example"), resolver=resolver, limits=_fast())
    assert local.paths() == ["/to-loopback"]  # /secret was never requested
    assert network.attempts == [(PUBLIC_IP, local.port)]


def test_a_redirect_is_resolved_and_checked_again(local: LocalServer, network: FakeNetwork) -> None:
    network.routes.update({PUBLIC_IP, "10.0.0.5"})
    resolver = SpyResolver({"public.example": [PUBLIC_IP], "internal.example": ["10.0.0.5"]})
    with pytest.raises(UnsafeURL, match=r"internal\.example"):
        detailed_fetch(local.url("/to-internal", host="public.example"), resolver=resolver, limits=_fast())
    assert resolver.hosts() == ["public.example", "internal.example"]  # once per hop
    assert local.paths() == ["/to-internal"]
    assert network.attempts == [(PUBLIC_IP, local.port)]


def test_https_verifies_the_host_name_not_the_address(local: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    default = netsafe._tls_context()
    assert default.check_hostname and default.verify_mode == ssl.CERT_REQUIRED

    wrapped: list[str | None] = []

    class PlainContext:
        """Records what TLS would be asked to verify; passes the plain socket through."""

        def wrap_socket(self, sock: socket.socket, server_hostname: str | None = None) -> socket.socket:
            wrapped.append(server_hostname)
            return sock

    monkeypatch.setattr(netsafe, "_tls_context", PlainContext)
    resolver = SpyResolver({"public.example": ["127.0.0.1"]})
    url = local.url("/ok", host="public.example", scheme="https")
    assert fetch_bytes(url, allow_private=True, resolver=resolver, limits=_fast()) == BODY
    assert wrapped == ["public.example"]
    assert local.seen()[0].headers["host"] == f"public.example:{local.port}"


def test_a_failed_tls_handshake_is_a_fetch_failure(local: LocalServer) -> None:
    # The local server speaks plain HTTP: the handshake fails, and nothing leaks (sockets are closed).
    resolver = SpyResolver({"public.example": ["127.0.0.1"]})
    with pytest.raises(FetchFailed):
        detailed_fetch(local.url("/ok", host="public.example", scheme="https"), allow_private=True, resolver=resolver)


def test_slow_name_resolution_counts_against_the_deadline(local: LocalServer) -> None:
    # A resolver slower than the whole budget: no request is sent after it.
    def slow_resolver(host: str, port: int) -> list[str]:
        time.sleep(0.3)
        return ["127.0.0.1"]

    with pytest.raises(FetchFailed, match=r"within 0\.2 s"):
        detailed_fetch(
            local.url("/ok", host="slow.example"),
            allow_private=True,
            resolver=slow_resolver,
            limits=FetchLimits(timeout=0.2),
        )
    assert local.seen() == []


# --- what a user is told: nothing about the network ---------------------------------------------


def test_refused_and_unresolvable_targets_read_alike(
    local: LocalServer, network: FakeNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    # A name that does not exist, one that resolves inward, a loopback or metadata literal, and a
    # public hop redirecting inward: the user sees one code, one message, none of them retried.
    network.routes.add(PUBLIC_IP)
    resolver = SpyResolver({"internal.example": ["10.0.0.5"], "public.example": [PUBLIC_IP]})
    targets = [
        "http://nowhere.example/photo.jpg",
        "http://internal.example/photo.jpg",
        "http://127.0.0.1/photo.jpg",
        "http://169.254.169.254/latest/meta-data",
        local.url("/to-internal", host="public.example"),
    ]
    seen = set()
    with caplog.at_level("WARNING", logger="common.netsafe"):
        for url in targets:
            with pytest.raises(FetchFailed) as info:
                fetch_bytes(url, resolver=resolver, limits=_fast())
            seen.add((info.value.code, info.value.message, info.value.transient))
    assert seen == {("fetch_failed", netsafe.UNREACHABLE_URL_MESSAGE, False)}
    logged = caplog.text
    assert "cannot resolve nowhere.example" in logged and "internal.example: it resolves to a private" in logged


def test_a_resolver_failing_for_now_is_retried_with_the_same_message() -> None:
    def failing(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    with pytest.raises(FetchFailed) as info:
        fetch_bytes("http://images.example/photo.jpg", resolver=failing, limits=_fast())
    assert info.value.transient and info.value.message == netsafe.UNREACHABLE_URL_MESSAGE
