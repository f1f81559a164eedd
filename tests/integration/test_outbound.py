"""Requests the service makes itself: photos by URL (SSRF-protected) and signed webhooks with retries."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook

from common.api_keys import ApiKeyStore
from common.netsafe import UNREACHABLE_URL_MESSAGE
from tests.integration.stack import Stack
from tests.integration.test_service import rgba_photo
from worker.embedded import wait_until

PHOTO = rgba_photo(77)


@dataclass
class Remote:
    """A local web server: serves a photo, redirects, and receives webhooks (failing the first N)."""

    port: int = 0
    requests: list[str] = field(default_factory=list)
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_first: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def remote() -> Iterator[Remote]:
    state = Remote()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            state.requests.append(self.path)
            if self.path == "/flaky.png" and state.requests.count("/flaky.png") == 1:
                self.send_error(503)  # the first try: the server is overloaded
            elif self.path in ("/photo.png", "/flaky.png"):
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PHOTO)))
                self.end_headers()
                self.wfile.write(PHOTO)
            elif self.path == "/to-metadata":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/iam/")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/to-loopback":
                self.send_response(302)
                self.send_header("Location", f"{state.base}/photo.png")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append(self.path)
            state.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
            failing = len(state.deliveries) <= state.fail_first
            self.send_response(500 if failing else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def trusting(stack_factory: Callable[..., Stack]) -> Stack:
    """A deployment that allows private addresses (as an internal network might)."""
    stack = stack_factory("local", BACKDROP_FETCH_ALLOW_PRIVATE="true")
    stack.start_worker()
    stack.start_api()
    return stack


@pytest.fixture(scope="module")
def guarded(stack_factory: Callable[..., Stack]) -> Stack:
    """The default: loopback, private, link-local and metadata addresses are refused."""
    stack = stack_factory("local")
    stack.start_worker()
    stack.start_api()
    return stack


def _submit_url(stack: Stack, url: str, **fields: str) -> dict:
    from tests.integration.stack import multipart

    body, content_type = multipart({"image_url": url, **fields}, {})
    response = stack.request("POST", "/v1/jobs", body, {"Content-Type": content_type})
    assert response.status == 202, response.body
    return stack.wait_for(response.json()["id"])


def _secret(stack: Stack) -> str:
    key_id = stack.token.removeprefix("bd_").split("_", 1)[0]
    return ApiKeyStore(stack.redis).webhook_secret(key_id)


def test_a_photo_url_that_fails_for_now_is_retried(trusting: Stack, remote: Remote) -> None:
    job = _submit_url(trusting, f"{remote.base}/flaky.png")
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert remote.requests == ["/flaky.png", "/flaky.png"]


def test_a_photo_url_that_is_missing_fails_at_once(trusting: Stack, remote: Remote) -> None:
    job = _submit_url(trusting, f"{remote.base}/missing.png")
    assert job["status"] == "failed" and job["error"]["code"] == "fetch_failed" and job["attempts"] == 1
    assert "HTTP 404" in job["error"]["message"]


def test_photo_by_url(trusting: Stack, remote: Remote) -> None:
    job = _submit_url(trusting, f"{remote.base}/photo.png", background="blue", format="png")
    assert job["status"] == "succeeded", job
    assert job["results"]["composite"]["width"] == 96
    assert remote.requests == ["/photo.png"]


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/photo.png",
        "http://localhost:{port}/photo.png",  # a hostname that resolves to loopback
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/photo.png",
    ],
)
def test_ssrf_targets_are_refused(guarded: Stack, remote: Remote, target: str) -> None:
    job = _submit_url(guarded, target.format(port=remote.port))
    assert job["status"] == "failed"
    # The same answer as for a name that does not resolve: nothing about the network is told.
    assert job["error"] == {"code": "fetch_failed", "message": UNREACHABLE_URL_MESSAGE}
    assert job["attempts"] == 1
    assert remote.requests == []  # nothing was fetched


def test_redirects_are_followed_and_checked_again(trusting: Stack, remote: Remote) -> None:
    # Here private addresses are allowed, so the redirect is followed and re-checked (and allowed);
    # the unit tests cover the refused case with a public first hop.
    job = _submit_url(trusting, f"{remote.base}/to-loopback")
    assert job["status"] == "succeeded"
    assert remote.requests == ["/to-loopback", "/photo.png"]


def test_each_redirect_is_checked_again(trusting: Stack, remote: Remote) -> None:
    # Even where private addresses are allowed, a redirect to the cloud metadata address is refused
    # at its own hop. (A redirect to loopback after a public first hop is covered by the unit tests:
    # a public first hop cannot be staged offline.)
    job = _submit_url(trusting, f"{remote.base}/to-metadata")
    assert job["status"] == "failed" and job["error"]["code"] == "fetch_failed"
    assert remote.requests == ["/to-metadata"]


def test_non_http_url_is_refused_at_submission(guarded: Stack) -> None:
    from tests.integration.stack import multipart

    body, content_type = multipart({"image_url": "file:///etc/passwd"}, {})
    response = guarded.request("POST", "/v1/jobs", body, {"Content-Type": content_type})
    assert response.status == 422 and response.json()["error"]["code"] == "unsafe_url"


def test_signed_webhooks_for_started_and_completed(trusting: Stack, remote: Remote) -> None:
    job = trusting.wait_for(
        trusting.submit(rgba_photo(5), webhook_url=f"{remote.base}/hook", webhook_events="started,completed").json()[
            "id"
        ]
    )
    wait_until(lambda: len(remote.deliveries) >= 2, 60, "two webhook deliveries")
    verifier = Webhook(_secret(trusting))
    events = {}
    for headers, body in remote.deliveries:
        verifier.verify(body, headers)  # raises when the signature does not match
        payload = json.loads(body)
        events[payload["type"]] = payload
    assert set(events) == {"job.started", "job.completed"}
    completed = events["job.completed"]["data"]
    assert completed["id"] == job["id"] and completed["status"] == "succeeded"
    assert completed["results"]["composite"]["url"]
    with pytest.raises(Exception):  # noqa: B017 - any verification failure will do
        verifier.verify(remote.deliveries[0][1] + b" ", remote.deliveries[0][0])


def test_webhook_is_retried_after_a_500(trusting: Stack, remote: Remote) -> None:
    remote.fail_first = 1
    trusting.wait_for(trusting.submit(rgba_photo(6), webhook_url=f"{remote.base}/hook").json()["id"])
    wait_until(lambda: len(remote.deliveries) >= 2, 60, "the retried delivery")
    first, second = remote.deliveries[:2]
    assert first[0]["webhook-id"] == second[0]["webhook-id"]  # the same message, delivered again
    Webhook(_secret(trusting)).verify(second[1], second[0])


def test_a_webhook_retry_longer_than_the_visibility_timeout_is_delivered_once(
    stack_factory: Callable[..., Stack], remote: Remote
) -> None:
    """The second retry waits 25 s, five times this deployment's visibility timeout: a message held that
    long unacknowledged is handed out again every 5 s, and each copy would post the event once more."""
    stack = stack_factory("local", BACKDROP_FETCH_ALLOW_PRIVATE="true", BACKDROP_VISIBILITY_TIMEOUT="5")
    stack.start_worker()
    stack.start_api()
    remote.fail_first = 2
    stack.wait_for(stack.submit(rgba_photo(8), webhook_url=f"{remote.base}/hook").json()["id"])
    wait_until(lambda: len(remote.deliveries) >= 3, 90, "the second retry")
    with pytest.raises(TimeoutError):  # copies handed out again share the message's time: they post at once
        wait_until(lambda: len(remote.deliveries) > 3, 4, "a fourth delivery")
    assert len({headers["webhook-id"] for headers, _ in remote.deliveries}) == 1  # one event
    times = [int(headers["webhook-timestamp"]) for headers, _ in remote.deliveries]
    assert times[1] - times[0] >= 4 and times[2] - times[1] >= 24, times  # the backoff: 5 s, then 25 s


def test_webhook_to_loopback_is_not_delivered(guarded: Stack, remote: Remote) -> None:
    job = guarded.wait_for(guarded.submit(rgba_photo(7), webhook_url=f"{remote.base}/hook").json()["id"])
    assert job["status"] == "succeeded"  # the job itself is not affected
    with pytest.raises(TimeoutError):
        wait_until(lambda: bool(remote.deliveries), 3, "a delivery that must not happen")
    assert remote.deliveries == []


def test_a_batch_reports_once_when_complete(trusting: Stack, remote: Remote) -> None:
    from common.client import encode_multipart

    body, content_type = encode_multipart(
        [("webhook_url", f"{remote.base}/hook"), ("format", "png")],
        [("images", f"p{i}.png", rgba_photo(40 + i)) for i in range(3)] + [("images", "bad.png", b"nope")],
    )
    response = trusting.request("POST", "/v1/batches", body, {"Content-Type": content_type})
    assert response.status == 202, response.body
    batch_id = response.json()["id"]
    wait_until(lambda: bool(remote.deliveries), 120, "the batch.completed event")
    with pytest.raises(TimeoutError):  # and only one
        wait_until(lambda: len(remote.deliveries) > 1, 3, "a second batch event")
    headers, raw = remote.deliveries[0]
    Webhook(_secret(trusting)).verify(raw, headers)
    payload = json.loads(raw)
    assert payload["type"] == "batch.completed"
    assert payload["data"]["id"] == batch_id and payload["data"]["status"] == "completed"
    assert payload["data"]["counts"]["succeeded"] == 3 and payload["data"]["counts"]["failed"] == 1
