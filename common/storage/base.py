"""The ``Storage`` interface every backend implements, and what the backends share.

Transient failures (network, timeouts, 5xx, bad credentials) surface as ``StorageError`` so callers
can retry them, and a missing object as ``ObjectNotFound``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, Self
from urllib.parse import quote

MAX_URL_EXPIRY_SECONDS = 7 * 24 * 3600  # the SigV4 limit; LocalStorage keeps the same bound
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def attachment_disposition(filename: str) -> str:
    """A ``Content-Disposition: attachment`` value naming ``filename`` safely (RFC 6266, with a UTF-8 form)."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if ord(c) >= 32 and ord(c) != 127).strip() or "download"
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    if fallback == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def check_expiry(expires_in: int) -> None:
    """Refuse a URL lifetime outside 1 s .. ``MAX_URL_EXPIRY_SECONDS``, the same bound for every backend."""
    if not 1 <= expires_in <= MAX_URL_EXPIRY_SECONDS:
        raise ValueError(f"expires_in must be between 1 and {MAX_URL_EXPIRY_SECONDS} seconds, got {expires_in}")


class FileServer(Protocol):
    """What the API needs to serve a backend's download URLs itself: check the link, then send the file."""

    def verify_url_signature(
        self, key: str, expires: int, signature: str, filename: str | None, now: float | None = None
    ) -> bool:
        """Whether a download URL's parameters were signed by this store and have not expired."""
        ...

    def open_path(self, key: str) -> Path:
        """The file holding ``key``, for sending; ``ObjectNotFound`` when absent."""
        ...

    def content_type(self, key: str) -> str:
        """The content type to send ``key`` with."""
        ...

    def verify_upload_signature(
        self, key: str, expires: int, content_type: str, content_length: int, signature: str, now: float | None = None
    ) -> bool:
        """Whether an upload URL's parameters were signed by this store and have not expired."""
        ...


class Storage(ABC):
    """A flat key -> bytes store with time-limited download URLs."""

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing any previous object atomically."""

    @abstractmethod
    def put_file(self, key: str, source: BinaryIO, content_type: str) -> int:
        """Store what ``source`` holds from its current position to its end, read in chunks (never whole
        into memory), replacing any previous object atomically; returns the bytes stored."""

    @abstractmethod
    def copy(self, source: str, key: str) -> None:
        """Store a copy of the object under ``source`` under ``key`` (inside the store, not through this
        process where the backend allows), replacing any previous object atomically; ``ObjectNotFound``
        when ``source`` is absent. The copy is a new object: its retention counts from now."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under ``key``; ``ObjectNotFound`` when absent."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; an absent key is not an error."""

    @abstractmethod
    def delete_many(self, keys: Sequence[str]) -> None:
        """Remove these keys, as few requests as the backend allows; absent keys are not an error. Every
        key is checked before any is removed (``ValueError`` for an unsafe one)."""

    @abstractmethod
    def delete_prefix(self, prefix: str, *, older_than: float | None = None) -> int:
        """Remove every key starting with ``prefix`` (a plain string prefix), or only those last written
        before the unix time ``older_than`` (retention); returns how many were removed."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The bytes of the object under ``key``; ``ObjectNotFound`` when absent."""

    @abstractmethod
    def url(self, key: str, *, expires_in: int, filename: str | None = None) -> str:
        """A download URL valid for ``expires_in`` seconds; ``filename`` makes it an attachment with that name."""

    @abstractmethod
    def upload_url(self, key: str, *, expires_in: int, content_type: str, content_length: int) -> str:
        """A URL valid for ``expires_in`` seconds that a client ``PUT``s the object to, with exactly this
        ``Content-Type`` and ``Content-Length`` (both are part of the signature)."""

    @abstractmethod
    def check(self) -> None:
        """Readiness probe: raise ``StorageError`` when the store cannot be used."""

    def file_server(self) -> FileServer | None:
        """How the API serves this store's URLs itself; ``None`` (the default) when they point elsewhere."""
        return None

    def close(self) -> None:
        """Release connections; the default holds none."""
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
