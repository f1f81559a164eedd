"""The API's memory does not grow with what is uploaded: a multipart batch is spooled to disk as it
arrives and stored from there, and a large JSON body is refused before it is read. Against the API
under gunicorn, its worker process's peak resident memory measured by the kernel (VmHWM)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import psutil
import pytest

from bench.bench_upload_memory import memory_of, padded_png, reset_peak
from common.client import encode_multipart
from tests.integration.stack import Stack
from worker.embedded import wait_until

PHOTOS = 8
PHOTO_BYTES = 8 * 2**20
# Peak growth allowed while 64 MiB of photos pass through: buffers and the request's bookkeeping, far
# below the photos themselves (holding them, as the API once did, is 64 MiB and more).
RSS_GROWTH_BOUND = 24 * 2**20


@pytest.fixture(scope="module")
def api(stack_factory: Callable[..., Stack]) -> Stack:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/<pid>/clear_refs to measure a peak")
    stack = stack_factory("local")
    stack.start_api()
    return stack


def _api_worker_pid(stack: Stack) -> int:
    assert stack.api is not None
    master = psutil.Process(stack.api.process.pid)
    wait_until(lambda: bool(master.children()), 30, "gunicorn's worker process")
    (worker,) = master.children()
    return worker.pid


def _batch(stack: Stack, photos: list[bytes]) -> dict:
    files = [("images", f"photo{index}.png", photo) for index, photo in enumerate(photos)]
    body, content_type = encode_multipart([("background", "white")], files)
    response = stack.request("POST", "/v1/batches", body, {"Content-Type": content_type})
    assert response.status == 202, response.body[:500]
    return response.json()


def test_a_large_multipart_batch_leaves_the_api_memory_flat(api: Stack) -> None:
    pid = _api_worker_pid(api)
    _batch(api, [padded_png(256 * 1024, seed=0)])  # warm: every code path of a batch has run once
    photos = [padded_png(PHOTO_BYTES, seed=index) for index in range(PHOTOS)]
    reset_peak(pid)
    before = memory_of(pid)["VmRSS"]
    batch = _batch(api, photos)
    growth = memory_of(pid)["VmHWM"] - before
    assert batch["total"] == PHOTOS and batch["counts"]["queued"] == PHOTOS, batch["counts"]
    assert growth < RSS_GROWTH_BOUND, f"the API's peak grew by {growth / 2**20:.1f} MiB for {PHOTOS} x 8 MiB"
    stored = [api.storage.get(api.redis.hget(f"backdrop:job:{job['id']}", "input_key")) for job in batch["jobs"]]
    assert sorted(stored) == sorted(photos)  # each photo stored whole, from the spool


def test_a_20_mib_json_body_is_refused_short(api: Stack) -> None:
    pid = _api_worker_pid(api)
    urls = [f"http://127.0.0.1:9/photo/{index:08d}.jpg" for index in range(20 * 2**20 // 40)]
    body = json.dumps({"image_urls": urls}).encode()
    assert len(body) >= 20 * 2**20
    reset_peak(pid)
    before = memory_of(pid)["VmRSS"]
    host, port = api.api_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.putrequest("POST", "/v1/batches")
        for name, value in {
            "Authorization": f"Bearer {api.token}",
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
        }.items():
            connection.putheader(name, value)
        connection.endheaders()
        # The server may answer and close before the body is all sent: the answer is still there.
        with suppress(BrokenPipeError, ConnectionResetError):
            connection.send(body)
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    assert response.status == 413
    assert json.loads(answer)["error"]["code"] == "payload_too_large"
    assert len(answer) < 500
    assert memory_of(pid)["VmHWM"] - before < RSS_GROWTH_BOUND
