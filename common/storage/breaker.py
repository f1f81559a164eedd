"""A circuit breaker in front of a storage: after a few failures in a row, calls fail at once for a
while instead of each waiting out a timeout, so a hanging storage does not pile up requests in the API
waiting on it.

It is written here rather than taken from pybreaker, which holds one lock for the whole of every call:
an API process's storage calls (its request threads, a batch's uploads and key checks, a zip's reads
ahead) would run one at a time, and one slow request would hold up all the others. Here only the
breaker's own state is under the lock; the calls run side by side.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, TypeVar

from common.errors import StorageError
from common.storage.base import FileServer, Storage

T = TypeVar("T")


class _Breaker:
    """Closed: calls go through, and ``failures`` storage errors in a row open it. Open: calls fail at
    once for ``reset_seconds``; then one trial call goes through (the others still fail at once), and
    its outcome closes the breaker or opens it again. Only ``StorageError`` counts as a failure: any
    other outcome (a missing object, a bad key) is an answer from the storage."""

    def __init__(self, failures: int, reset_seconds: float, clock: Callable[[], float]) -> None:
        self.fail_max = failures
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0  # storage errors in a row
        self._opened_at: float | None = None
        self._trial_running = False

    def call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        trial = self._admit()
        try:
            result = method(*args, **kwargs)
        except StorageError:
            self._settle(trial, failed=True)
            raise
        except BaseException:
            self._settle(trial, failed=False)
            raise
        self._settle(trial, failed=False)
        return result

    def _admit(self) -> bool:
        """Whether this call is the trial of an open breaker; StorageError when it may not go through."""
        with self._lock:
            if self._opened_at is None:
                return False
            if self._trial_running or self._clock() - self._opened_at < self.reset_seconds:
                raise StorageError(
                    f"object storage failed {self.fail_max} times in a row; not tried again for a few seconds"
                )
            self._trial_running = True
            return True

    def _settle(self, trial: bool, *, failed: bool) -> None:
        with self._lock:
            if trial:
                self._trial_running = False
            if not failed:
                self._failures = 0
                if trial:
                    self._opened_at = None
                return
            self._failures += 1
            if trial or self._failures >= self.fail_max:
                self._opened_at = self._clock()


class GuardedStorage(Storage):
    """``inner`` behind a breaker that opens after ``failures`` storage errors in a row and lets one
    call through again after ``reset_seconds``."""

    def __init__(
        self, inner: Storage, *, failures: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.inner = inner
        self.breaker = _Breaker(failures, reset_seconds, clock)

    def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.breaker.call(method, *args, **kwargs)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._call(self.inner.put, key, data, content_type)

    def put_file(self, key: str, source: BinaryIO, content_type: str) -> int:
        return self._call(self.inner.put_file, key, source, content_type)

    def copy(self, source: str, key: str) -> None:
        self._call(self.inner.copy, source, key)

    def get(self, key: str) -> bytes:
        return self._call(self.inner.get, key)

    def delete(self, key: str) -> None:
        self._call(self.inner.delete, key)

    def delete_many(self, keys: Sequence[str]) -> None:
        self._call(self.inner.delete_many, keys)

    def delete_prefix(self, prefix: str, *, older_than: float | None = None) -> int:
        return self._call(self.inner.delete_prefix, prefix, older_than=older_than)

    def exists(self, key: str) -> bool:
        return self._call(self.inner.exists, key)

    def size(self, key: str) -> int:
        return self._call(self.inner.size, key)

    def url(self, key: str, *, expires_in: int, filename: str | None = None) -> str:
        return self.inner.url(key, expires_in=expires_in, filename=filename)  # signing needs no network

    def upload_url(self, key: str, *, expires_in: int, content_type: str, content_length: int) -> str:
        return self.inner.upload_url(
            key, expires_in=expires_in, content_type=content_type, content_length=content_length
        )

    def check(self) -> None:
        self._call(self.inner.check)

    def file_server(self) -> FileServer | None:
        return self.inner.file_server()

    def close(self) -> None:
        self.inner.close()
