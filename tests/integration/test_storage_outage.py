"""A storage outage longer than a few retries loses nothing: jobs are retried with capped backoff until
a deadline measured in minutes, then succeed when the storage is back."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from common.api_keys import ApiKeyStore
from common.batches import BatchStore
from common.client import BackdropClient
from common.jobs import JobStore
from common.storage.factory import storage_from_settings
from tests.conftest import batch_job, succeed_with_composite
from tests.integration.stack import Stack
from tests.integration.test_service import rgba_photo
from worker.embedded import wait_until

OUTAGE_ATTEMPTS = 9  # far past the 5 retries (6 attempts) that used to fail every job
DEADLINE = 120


class ToggleProxy:
    """A TCP proxy on loopback to ``target``; ``down()`` refuses connections and cuts open ones."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._passed = 0  # bytes carried back from the target since the last ``cut_after``
        self._limit: int | None = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut_after(self, limit: int) -> None:
        """Go ``down()`` once ``limit`` more bytes of the target's answers have been carried."""
        with self._lock:
            self._passed, self._limit = 0, limit

    def up(self) -> None:
        with self._lock:
            self._limit = None
            if self._listener is not None:
                return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            if self._listener is not None:
                # A close alone leaves a thread blocked in accept() accepting (Linux); a shutdown wakes it.
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for source, sink, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(source, sink, answers), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
                if answers and self._carried(len(chunk)):
                    self.down()
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _carried(self, count: int) -> bool:
        """Count ``count`` bytes of answers; whether the limit set by ``cut_after`` is reached."""
        with self._lock:
            self._passed += count
            return self._limit is not None and self._passed >= self._limit


@pytest.fixture
def proxy(s3_server: str) -> Iterator[ToggleProxy]:
    toggle = ToggleProxy(s3_server)
    yield toggle
    toggle.down()


def test_an_outage_longer_than_the_old_retry_budget_loses_nothing(
    stack_factory: Callable[..., Stack], proxy: ToggleProxy
) -> None:
    stack = stack_factory(
        "s3",
        BACKDROP_S3_ENDPOINT_URL=proxy.url,
        BACKDROP_S3_PUBLIC_ENDPOINT_URL=proxy.url,
        BACKDROP_TASK_RETRY_BACKOFF_MAX_SECONDS="0.5",  # many retries in a short outage
        BACKDROP_TASK_RETRY_DEADLINE_SECONDS=str(DEADLINE),
        BACKDROP_STORAGE_CONNECT_TIMEOUT_SECONDS="1",
        BACKDROP_STORAGE_MAX_ATTEMPTS="1",
    )
    stack.start_api()
    ids = [stack.submit(rgba_photo(700 + i)).json()["id"] for i in range(4)]
    proxy.down()
    stack.start_worker(concurrency=4)
    store = JobStore(stack.redis, stack.settings.job_ttl_seconds)

    def attempts() -> int:
        return min(store.get(job_id).attempts for job_id in ids)

    wait_until(lambda: attempts() >= OUTAGE_ATTEMPTS, DEADLINE / 2, "retries through the outage")
    assert {store.get(job_id).status.value for job_id in ids} <= {"queued", "processing"}
    proxy.up()
    jobs = [stack.wait_for(job_id, timeout=DEADLINE) for job_id in ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * 4, jobs
    assert all(job["attempts"] > OUTAGE_ATTEMPTS for job in jobs)


ZIP_MEMBERS = 48
MEMBER_BYTES = 256 * 1024
BREAKER_RESET = 0.5  # seconds the API's storage breaker stays open after an outage


def _zip_stack(stack_factory: Callable[..., Stack], proxy: ToggleProxy, s3_server: str) -> tuple[Stack, str]:
    """An API whose storage is reached through ``proxy``, and a batch of ``ZIP_MEMBERS`` succeeded jobs
    whose composites were written straight to the storage."""
    stack = stack_factory(
        "s3",
        BACKDROP_S3_ENDPOINT_URL=proxy.url,
        BACKDROP_S3_PUBLIC_ENDPOINT_URL=proxy.url,
        BACKDROP_STORAGE_CONNECT_TIMEOUT_SECONDS="1",
        BACKDROP_STORAGE_MAX_ATTEMPTS="1",
        BACKDROP_STORAGE_BREAKER_RESET_SECONDS=str(BREAKER_RESET),
    )
    stack.start_api()
    assert stack.token is not None
    owner = ApiKeyStore(stack.redis).authenticate(stack.token).id
    direct = storage_from_settings(stack.settings.model_copy(update={"s3_endpoint_url": s3_server}))
    jobs = JobStore(stack.redis, stack.settings.job_ttl_seconds)
    batches = BatchStore(stack.redis, jobs)
    batch = batches.create(owner, ZIP_MEMBERS)
    ids = [batch_job(jobs, owner, batch.id) for _ in range(ZIP_MEMBERS)]
    try:
        for index, job_id in enumerate(ids):
            succeed_with_composite(jobs, direct, job_id, bytes([index]) * MEMBER_BYTES)
    finally:
        direct.close()
    batches.add_jobs(batch, ids)
    return stack, batch.id


def test_a_zip_asked_for_while_the_storage_is_down_is_a_503(
    stack_factory: Callable[..., Stack], proxy: ToggleProxy, s3_server: str
) -> None:
    stack, batch_id = _zip_stack(stack_factory, proxy, s3_server)
    proxy.down()
    response = stack.request("GET", f"/v1/batches/{batch_id}/results.zip")
    assert response.status == 503, response.body[:200]
    assert response.json()["error"]["code"] == "storage_unavailable"


def test_a_zip_cut_by_a_storage_outage_is_never_taken_for_a_whole_one(
    stack_factory: Callable[..., Stack], proxy: ToggleProxy, s3_server: str, tmp_path: Path
) -> None:
    stack, batch_id = _zip_stack(stack_factory, proxy, s3_server)
    quarter = ZIP_MEMBERS * MEMBER_BYTES // 4
    client = BackdropClient(stack.api_url, stack.token, retries=0)
    proxy.cut_after(quarter)  # the storage goes away a quarter of the way into the zip
    with pytest.raises(http.client.IncompleteRead):
        client.download_batch_zip(batch_id, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no zip, and no partial file left behind

    # A client that may retry gets the whole zip once the storage is back, each attempt written afresh.
    waits: list[float] = []

    def storage_back(seconds: float) -> None:
        waits.append(seconds)
        proxy.up()
        time.sleep(2 * BREAKER_RESET)  # past the API's breaker: its next storage call is a trial

    retrying = BackdropClient(stack.api_url, stack.token, retries=3)
    retrying._sleep = storage_back
    storage_back(0)
    waits.clear()
    # The first storage call after the outage is the breaker's trial: the zip's first read goes alone,
    # so that its reads ahead are not refused beside it.
    retrying.download_batch_zip(batch_id, tmp_path)
    assert waits == []
    proxy.cut_after(quarter)
    path = retrying.download_batch_zip(batch_id, tmp_path)
    assert waits  # the zip was cut, and asked for again
    with zipfile.ZipFile(path) as archive:
        assert len(archive.namelist()) == ZIP_MEMBERS and archive.testzip() is None
        assert archive.read(archive.namelist()[-1]) == bytes([ZIP_MEMBERS - 1]) * MEMBER_BYTES
    assert stack.request("GET", "/healthz").status == 200
