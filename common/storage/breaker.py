"""A circuit breaker in front of a storage: after a few failures in a row, calls fail at once for a
while instead of each waiting out a timeout, so a hanging storage does not pile up requests in the API
waiting on it. The breaker is pybreaker's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

import pybreaker

from common.errors import StorageError
from common.storage.base import FileServer, Storage

T = TypeVar("T")


def _not_a_storage_failure(exc: BaseException) -> bool:
    """Only ``StorageError`` counts against the store: a missing object or a bad key is an answer."""
    return not isinstance(exc, StorageError)


class GuardedStorage(Storage):
    """``inner`` behind a breaker that opens after ``failures`` storage errors in a row and lets one
    call through again after ``reset_seconds``."""

    def __init__(self, inner: Storage, *, failures: int, reset_seconds: float) -> None:
        self.inner = inner
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=failures, reset_timeout=reset_seconds, exclude=[_not_a_storage_failure], name="storage"
        )

    def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return self.breaker.call(method, *args, **kwargs)
        except pybreaker.CircuitBreakerError:
            raise StorageError(
                f"object storage failed {self.breaker.fail_max} times in a row; not tried again for a few seconds"
            ) from None

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._call(self.inner.put, key, data, content_type)

    def put_file(self, key: str, source: BinaryIO, content_type: str) -> int:
        return self._call(self.inner.put_file, key, source, content_type)

    def get(self, key: str) -> bytes:
        return self._call(self.inner.get, key)

    def delete(self, key: str) -> None:
        self._call(self.inner.delete, key)

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
