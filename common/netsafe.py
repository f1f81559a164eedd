"""Fetching URLs that users give (an input image, a webhook target) without Server-Side Request Forgery.

A user's URL must never make Backdrop talk to its own network: loopback, private ranges, link-local
(where the cloud metadata service hands out credentials), and so on. Checking the host name is not
enough: DNS can point any name anywhere, and can change its answer between a check and the connection
(DNS rebinding). So each hop resolves the host once, checks every address it resolved to, and connects
to a checked address itself, while the Host header and TLS (SNI, certificate verification) keep using the
host name. A redirect is a new hop: parsed, resolved and checked again.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
import string
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from types import TracebackType
from urllib.parse import quote, urljoin, urlsplit

from common.errors import FetchFailed, UnsafeURL

__all__ = [
    "METADATA_ADDRESSES",
    "FetchFailed",
    "FetchLimits",
    "FetchedResponse",
    "Resolver",
    "UnsafeURL",
    "check_address",
    "check_url",
    "fetch_bytes",
    "safe_request",
]

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], list[str]]
"""host, port -> the IP addresses (as strings) to connect to."""

# What a user is told about any URL that could not be fetched before it answered: never whether its
# name resolved, to what kind of address, or how a connection failed (that would map the network
# Backdrop runs in for whoever submits URLs). The details go to the log.
UNREACHABLE_URL_MESSAGE = "the URL could not be fetched: its host is unreachable or may not be fetched from"
# getaddrinfo's answers that a name has no address (not a resolver that failed for now).
_NO_SUCH_NAME = frozenset(
    code for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None)) if code is not None
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "Backdrop"
_CHUNK = 64 * 1024
# Caller headers that must not follow a redirect to another origin.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
# Headers describing a request body, dropped when a redirect turns the request into a GET.
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# Instance metadata and credential endpoints. They are refused even with allow_private=True: a
# deployment that trusts its internal network still never wants a user's URL to read the machine's
# cloud credentials, and no image or webhook receiver legitimately lives there.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # instance metadata: AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS pod identity
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
        "100.100.100.200",  # Alibaba Cloud metadata
        "192.0.0.192",  # Oracle Cloud metadata
    )
)

# The non-public ranges that allow_private=True opens (tests, trusted internal deployments).
_PRIVATE_RANGES: dict[str, tuple[IPNetwork, ...]] = {
    "a loopback address": _nets("127.0.0.0/8", "::1/128"),
    "a private address": _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"),
    "a link-local address": _nets("169.254.0.0/16", "fe80::/10"),
    "a carrier-grade NAT address": _nets("100.64.0.0/10"),
}
# Other IPv4 special-purpose ranges (IANA registry) that are not globally reachable: always refused.
_SPECIAL_V4 = _nets(
    "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation
    "192.88.99.0/24",  # deprecated 6to4 relay anycast
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation
    "203.0.113.0/24",  # documentation
    "240.0.0.0/4",  # reserved, and the broadcast address
)
# IPv6: only global unicast (2000::/3) is accepted, minus these special-purpose blocks.
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_SPECIAL_V6 = _nets(
    "2001::/23",  # IETF protocol assignments, Teredo included
    "2001:db8::/32",  # documentation
    "3fff::/20",  # documentation
)
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix: 64:ff9b::a.b.c.d
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")  # 6to4: 2002:AABB:CCDD::/48 routes to a.b.c.d


# --- addresses ------------------------------------------------------------------------------


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form really reaches: IPv4-mapped, IPv4-compatible or NAT64."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr in _V4_COMPATIBLE and int(addr) > 1:  # :: and ::1 are not IPv4 forms
        return ipaddress.IPv4Address(int(addr))
    return None


def _refusal(addr: IPAddress, allow_private: bool) -> str | None:
    """Why ``addr`` must not be connected to, or None when it may be."""
    if addr in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(addr)
        if embedded is not None:
            return _refusal(embedded, allow_private)
        if addr in _SIX_TO_FOUR and addr.sixtofour is not None:
            reason = _refusal(addr.sixtofour, allow_private)
            if reason is not None:
                return f"a 6to4 address embedding {reason}"
    for label, networks in _PRIVATE_RANGES.items():
        if any(addr in network for network in networks):
            return None if allow_private else label
    if addr.is_unspecified:
        return "the unspecified address"
    if addr.is_multicast:
        return "a multicast address"
    if isinstance(addr, ipaddress.IPv4Address):
        if any(addr in network for network in _SPECIAL_V4):
            return "a reserved or special-purpose address"
    elif addr not in _GLOBAL_UNICAST_V6 or any(addr in network for network in _SPECIAL_V6):
        return "a reserved or special-purpose address"
    if not addr.is_global:  # the standard library's own table, as a second opinion
        return "not a globally routable address"
    return None


def _parse_ip(ip: str) -> IPAddress | None:
    """``ip`` as an address (an IPv6 zone such as %eth0 dropped), or None when it is not one."""
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None


def check_address(ip: str, *, allow_private: bool = False) -> None:
    """Raise UnsafeURL unless ``ip`` is a globally routable address.

    IPv4-mapped, IPv4-compatible, NAT64 and 6to4 forms are judged by the IPv4 address they embed.
    ``allow_private`` opens loopback, private, link-local and carrier-grade NAT ranges, never the
    cloud metadata addresses (METADATA_ADDRESSES), the unspecified address, multicast or reserved ranges.
    """
    addr = _parse_ip(ip)
    if addr is None:
        raise UnsafeURL(f"not an IP address: {ip!r}")
    reason = _refusal(addr, allow_private)
    if reason is not None:
        raise UnsafeURL(f"refusing to connect to {ip}: {reason}")


# --- URLs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """One parsed, validated URL: what a hop connects to and asks for."""

    url: str
    scheme: str
    host: str  # ASCII, no brackets
    port: int
    request_target: str  # path and query, percent-encoded

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def display(self) -> str:
        """scheme://host[:port], for messages: never the path or query, which may carry secrets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")


def _parse(url: str) -> _Target:
    if not isinstance(url, str) or not url:
        raise UnsafeURL("the URL is empty")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise UnsafeURL("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURL(f"only http and https URLs can be fetched, not {scheme + ':' if scheme else 'a relative URL'}")
    if "@" in parts.netloc:
        raise UnsafeURL("URLs with credentials (user:password@host) are refused")
    host = parts.hostname
    if not host:
        raise UnsafeURL("the URL has no host")
    if _parse_ip(host) is None:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise UnsafeURL("the URL's host name is not valid") from None
    if port == 0:
        raise UnsafeURL("port 0 cannot be connected to")
    path = quote(parts.path or "/", safe=string.punctuation)
    query = "?" + quote(parts.query, safe=string.punctuation) if parts.query else ""
    return _Target(url, scheme, host, port or (443 if scheme == "https" else 80), path + query)


def check_url(url: str) -> str:
    """Raise UnsafeURL unless ``url`` could be fetched (http/https, a host, no credentials); returns it.

    Cheap and offline, for validating a request: addresses are checked when the URL is fetched.
    """
    _parse(url)
    return url


def _system_resolver(host: str, port: int) -> list[str]:
    """Both address families, in the system's order of preference."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _resolve_checked(host: str, port: int, resolver: Resolver, allow_private: bool) -> list[str]:
    """Resolve ``host`` once and check every address: the addresses a hop may connect to.

    An IP literal is checked as it is. When any address is unsafe the host is refused outright, rather
    than connecting to the safe ones: a name that also points inward is not a public image host.
    """
    if _parse_ip(host) is not None:
        check_address(host, allow_private=allow_private)
        return [host]
    try:
        addresses = list(dict.fromkeys(resolver(host, port)))
    except (OSError, UnicodeError) as exc:
        # A name that does not exist is final, like a refused address: the two must look alike.
        no_such_name = isinstance(exc, socket.gaierror) and exc.errno in _NO_SUCH_NAME
        raise FetchFailed(f"cannot resolve {host}: {exc}", transient=not no_such_name) from None
    if not addresses:
        raise FetchFailed(f"cannot resolve {host}: no addresses")
    for ip in addresses:
        addr = _parse_ip(ip)
        reason = "not an IP address" if addr is None else _refusal(addr, allow_private)
        if reason is not None:
            raise UnsafeURL(f"refusing to connect to {host}: it resolves to {reason}")
    return addresses


# --- connections ----------------------------------------------------------------------------


class _Deadline:
    """The end of the whole exchange, redirects included."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def expired_error(self) -> FetchFailed:
        return FetchFailed(f"no complete answer within {self.seconds:g} s", transient=True)

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise self.expired_error()
        return left


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to one of the checked addresses, never to what the host name resolves to now.

    ``host`` is the URL's host name: http.client puts it in the Host header.
    """

    def __init__(self, host: str, port: int, addresses: list[str], *, timeout: float, deadline: _Deadline) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses
        self._timeout = timeout
        self._deadline = deadline

    def _open_socket(self) -> socket.socket:
        """A TCP connection to the first checked address that answers."""
        error: OSError | None = None
        for ip in self._addresses:
            timeout = min(self._timeout, self._deadline.remaining())
            try:
                sock = socket.create_connection((ip, self.port), timeout=timeout)
            except OSError as exc:
                error = exc
                continue
            with suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        raise error or OSError("no address to connect to")

    def connect(self) -> None:
        self.sock = self._open_socket()


@cache
def _tls_context() -> ssl.SSLContext:
    """Certificate and host name verification against the system's trust store."""
    return ssl.create_default_context()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """HTTPS to a checked address; SNI and certificate verification use the URL's host name."""

    default_port = http.client.HTTPS_PORT

    def connect(self) -> None:
        sock = self._open_socket()
        try:
            self.sock = _tls_context().wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class _Watchdog:
    """Shuts a connection's socket down when the deadline passes.

    A per-read timeout alone lets a server trickle a byte at a time for ever; this bounds the whole hop.
    """

    def __init__(self, conn: http.client.HTTPConnection, deadline: _Deadline) -> None:
        self.fired = False
        self._conn = conn
        self._timer = threading.Timer(deadline.remaining(), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        sock = self._conn.sock
        if sock is not None:
            with suppress(OSError):
                # The plain socket method: an SSLSocket's own shutdown() would first drop its TLS state.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._timer.cancel()


def _header_dict(response: http.client.HTTPResponse) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in response.getheaders():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _read_body(response: http.client.HTTPResponse, headers: dict[str, str], max_bytes: int) -> bytes:
    """The body, refused as soon as it is known to exceed ``max_bytes``."""
    declared = headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchFailed(f"the answer is {int(declared)} bytes, above the limit of {max_bytes}")
    received = bytearray()
    # read1: at most one system call, so each read is bounded by the socket timeout.
    while chunk := response.read1(min(_CHUNK, max_bytes + 1 - len(received))):
        received += chunk
        if len(received) > max_bytes:
            raise FetchFailed(f"the answer is larger than the limit of {max_bytes} bytes")
    if response.length:  # Content-Length said more than arrived
        raise FetchFailed("the connection closed before the end of the answer", transient=True)
    return bytes(received)


def _exchange(
    method: str,
    target: _Target,
    addresses: list[str],
    body: bytes | None,
    headers: dict[str, str],
    limits: FetchLimits,
    deadline: _Deadline,
    follow_redirects: bool,
) -> tuple[int, dict[str, str], bytes]:
    """One request and its answer, over one connection to a checked address (a redirect's body is skipped)."""
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    conn = cls(target.host, target.port, addresses, timeout=limits.timeout, deadline=deadline)
    try:
        with _Watchdog(conn, deadline) as watchdog:
            try:
                conn.connect()
                conn.request(method, target.request_target, body=body, headers=headers)
                response = conn.getresponse()
                try:
                    status = response.status
                    response_headers = _header_dict(response)
                    if follow_redirects and status in REDIRECT_STATUSES and response_headers.get("location"):
                        data = b""
                    else:
                        data = _read_body(response, response_headers, limits.max_bytes)
                finally:
                    response.close()
            except (OSError, http.client.HTTPException, FetchFailed) as exc:
                if watchdog.fired:  # whatever the shutdown looked like to the reader
                    raise deadline.expired_error() from None
                if isinstance(exc, FetchFailed):
                    raise
                raise FetchFailed(f"{target.display}: {exc or type(exc).__name__}", transient=True) from None
            if watchdog.fired:  # the shutdown may read as a clean end of the body
                raise deadline.expired_error()
    finally:
        conn.close()
    return status, response_headers, data


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchLimits:
    """Bounds on one fetch. ``timeout`` bounds each connect and each read, and the whole exchange too
    (all hops together), so a server trickling bytes cannot hold a worker."""

    max_bytes: int = 25 * 2**20
    timeout: float = 10.0
    max_redirects: int = 3


DEFAULT_LIMITS = FetchLimits()


@dataclass(frozen=True)
class FetchedResponse:
    """The final answer: its URL after redirects, status, headers (lower-case names) and body."""

    url: str
    status: int
    headers: dict[str, str]
    body: bytes


def safe_request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    limits: FetchLimits = DEFAULT_LIMITS,
    allow_private: bool = False,
    resolver: Resolver | None = None,
    follow_redirects: bool = True,
) -> FetchedResponse:
    """An HTTP(S) request to a user's URL that cannot reach Backdrop's own network.

    Raises UnsafeURL for a refused URL or address (on any hop), FetchFailed when the remote end cannot
    be reached, is too slow, sends too much, or redirects too often. An HTTP error status is returned,
    not raised: callers decide. Redirects (301/302/303/307/308) are followed when ``follow_redirects``;
    303, and 301/302 after a POST, become a GET without body; credentials headers are dropped when a
    redirect changes origin.
    """
    resolve = resolver or _system_resolver
    deadline = _Deadline(limits.timeout)
    method = method.upper()
    request_headers = {"User-Agent": USER_AGENT, "Connection": "close", **(headers or {})}
    target = _parse(url)
    redirects = 0
    while True:
        addresses = _resolve_checked(target.host, target.port, resolve, allow_private)
        deadline.remaining()  # a slow resolver counts against the deadline too
        status, response_headers, data = _exchange(
            method, target, addresses, body, request_headers, limits, deadline, follow_redirects
        )
        location = response_headers.get("location")
        if not (follow_redirects and status in REDIRECT_STATUSES and location):
            return FetchedResponse(target.url, status, response_headers, data)
        if redirects >= limits.max_redirects:
            raise FetchFailed(f"{target.display}: more than {limits.max_redirects} redirects")
        redirects += 1
        next_target = _parse(urljoin(target.url, location))
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method, body = "GET", None
            request_headers = {k: v for k, v in request_headers.items() if k.lower() not in _BODY_HEADERS}
        if next_target.origin != target.origin:
            request_headers = {k: v for k, v in request_headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
        target = next_target


# Answers after which the same request may succeed a little later.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def fetch_bytes(
    url: str,
    *,
    limits: FetchLimits = DEFAULT_LIMITS,
    allow_private: bool = False,
    resolver: Resolver | None = None,
) -> bytes:
    """GET ``url`` safely and return its body; any status but 2xx is a FetchFailed.

    Everything that goes wrong before an answer (a refused address on any hop, a name that does not
    resolve, a failed connection, a timeout, an oversized answer) is one ``FetchFailed`` with
    ``UNREACHABLE_URL_MESSAGE``, transient or not as the cause was; the cause is logged.
    """
    try:
        response = safe_request("GET", url, limits=limits, allow_private=allow_private, resolver=resolver)
    except (UnsafeURL, FetchFailed) as exc:
        log.warning("fetching %s failed: %s: %s", _display(url), exc.code, exc.message)
        raise FetchFailed(UNREACHABLE_URL_MESSAGE, transient=exc.retryable) from None
    if not 200 <= response.status < 300:
        raise FetchFailed(
            f"{_parse(response.url).display} answered HTTP {response.status}",
            transient=response.status in TRANSIENT_STATUSES,
        )
    return response.body


def _display(url: str) -> str:
    """scheme://host[:port] of ``url`` for a log line (never its path or query), or a placeholder."""
    try:
        return _parse(url).display
    except UnsafeURL:
        return "an invalid URL"
