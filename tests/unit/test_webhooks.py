"""Webhook signing and delivery, verified the way a receiver would: with the standardwebhooks library."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from common import webhooks
from common.webhooks import (
    WEBHOOK_EVENTS,
    DeliveryResult,
    build_payload,
    deliver,
    new_webhook_secret,
    retry_delay,
    sign,
)

PAYLOAD = {"type": "job.completed", "timestamp": "2024-05-01T12:00:00Z", "data": {"id": "job_1", "status": "failed"}}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class _Receiver(BaseHTTPRequestHandler):
    """Records each delivery; /status/N answers N (a redirect for 3xx)."""

    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.received.append(Received(self.path, dict(self.headers.items()), body))
        status = int(self.path.rsplit("/", 1)[1]) if self.path.startswith("/status/") else 204
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "/target")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST


class _Server(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receiver)
        self.received: list[Received] = []
        self.lock = threading.Lock()


@dataclass
class LocalReceiver:
    server: _Server

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def received(self) -> list[Received]:
        with self.server.lock:
            return list(self.server.received)


@pytest.fixture
def receiver() -> Iterator[LocalReceiver]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield LocalReceiver(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _deliver(url: str, secret: str, **kw: Any) -> DeliveryResult:
    kw.setdefault("allow_private", True)
    kw.setdefault("timeout", 5)
    return deliver(url, secret, "msg_1", PAYLOAD, **kw)


# --- secrets, payloads, signatures --------------------------------------------------------------


def test_new_secrets_are_standard_webhooks_secrets() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert new_webhook_secret() != secret
    Webhook(secret)  # accepted by the reference library


def test_build_payload() -> None:
    moment = datetime(2024, 5, 1, 14, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    payload = build_payload("job.completed", {"id": "job_1", "status": "succeeded"}, now=moment)
    assert payload == {
        "type": "job.completed",
        "timestamp": "2024-05-01T12:30:05.123456Z",
        "data": {"id": "job_1", "status": "succeeded"},
    }
    assert datetime.fromisoformat(build_payload("job.started", {})["timestamp"]).tzinfo is not None
    assert WEBHOOK_EVENTS == ("job.started", "job.completed", "batch.completed")
    with pytest.raises(ValueError, match="unknown webhook event"):
        build_payload("job.succeeded", {})


def test_sign_produces_headers_a_receiver_verifies() -> None:
    secret = new_webhook_secret()
    now = datetime.now(UTC)
    body = json.dumps(PAYLOAD, separators=(",", ":")).encode()
    headers = sign(secret, "msg_42", now, body)
    assert headers["webhook-id"] == "msg_42"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["Content-Type"] == "application/json"
    assert Webhook(secret).verify(body, headers) == PAYLOAD
    # The same instant in another time zone signs the same.
    assert sign(secret, "msg_42", now.astimezone(timezone(timedelta(hours=-5))), body) == headers
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"failed", b"passed"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(body, headers)


# --- delivery -----------------------------------------------------------------------------------


def test_a_delivery_arrives_signed_and_verifies(receiver: LocalReceiver) -> None:
    secret = new_webhook_secret()
    result = _deliver(receiver.url("/hook"), secret)
    assert result == DeliveryResult(ok=True, status=204, error=None, retryable=False)
    (got,) = receiver.received()
    assert got.path == "/hook"
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"].isdigit()
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"
    assert got.body == json.dumps(PAYLOAD, separators=(",", ":")).encode()  # compact JSON
    assert Webhook(secret).verify(got.body, got.headers) == PAYLOAD
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(got.body.replace(b"job_1", b"job_2"), got.headers)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (408, True), (429, True), (400, False), (404, False), (410, False)],
)
def test_error_statuses_are_classified(receiver: LocalReceiver, status: int, retryable: bool) -> None:
    result = _deliver(receiver.url(f"/status/{status}"), new_webhook_secret())
    assert not result.ok
    assert result.status == status
    assert result.retryable is retryable
    assert result.error is not None and str(status) in result.error
    assert len(receiver.received()) == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed(receiver: LocalReceiver, status: int) -> None:
    result = _deliver(receiver.url(f"/status/{status}"), new_webhook_secret())
    assert not result.ok and not result.retryable
    assert result.status == status
    assert result.error is not None and "redirects are not followed" in result.error
    assert [r.path for r in receiver.received()] == [f"/status/{status}"]  # /target got nothing


def test_private_targets_are_refused_without_a_request(receiver: LocalReceiver) -> None:
    result = _deliver(receiver.url("/hook"), new_webhook_secret(), allow_private=False)
    assert not result.ok and not result.retryable
    assert result.status is None
    assert result.error is not None and "loopback" in result.error
    assert receiver.received() == []


def test_metadata_and_bad_schemes_are_final_failures() -> None:
    for url in ["http://169.254.169.254/latest/meta-data", "ftp://example.com/hook", "http://u:p@example.com/"]:
        result = _deliver(url, new_webhook_secret(), allow_private=True)
        assert (result.ok, result.retryable, result.status) == (False, False, None)


def test_an_unreachable_receiver_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _deliver(f"http://127.0.0.1:{port}/hook", new_webhook_secret())
    assert (result.ok, result.retryable, result.status) == (False, True, None)
    assert result.error


def test_a_pinned_host_name_is_used_for_delivery(receiver: LocalReceiver) -> None:
    port = receiver.server.server_address[1]
    calls: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    result = _deliver(f"http://hooks.example:{port}/hook", new_webhook_secret(), resolver=resolver)
    assert result.ok
    assert calls == ["hooks.example"]
    assert receiver.received()[0].headers["Host"] == f"hooks.example:{port}"


# --- retries ------------------------------------------------------------------------------------


def test_retry_delay_grows_then_caps() -> None:
    delays = [retry_delay(attempt) for attempt in range(1, 12)]
    assert delays[:5] == [5, 25, 125, 625, 3125]
    assert all(a < b for a, b in pairwise(delays[:6]))
    assert all(a <= b for a, b in pairwise(delays))
    assert delays[5:] == [webhooks.RETRY_CAP_SECONDS] * 6 == [3600] * 6
    assert retry_delay(10_000) == 3600
    with pytest.raises(ValueError):
        retry_delay(0)
