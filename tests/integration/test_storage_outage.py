"""A storage outage longer than a few retries loses nothing: jobs are retried with capped backoff until
a deadline measured in minutes, then succeed when the storage is back."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from common.jobs import JobStore
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
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
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
                self._listener.close()
                self._listener = None
            for sock in self._open:
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
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


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
