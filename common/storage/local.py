"""The local-disk backend: objects as files, downloads through HMAC-signed URLs the API serves.

The signing key comes from the settings or from a key file shared by every process on one data dir.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import mimetypes
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode

from common.errors import ObjectNotFound, StorageError, StorageFull
from common.storage.base import DEFAULT_CONTENT_TYPE, FileServer, Storage, check_expiry
from common.storage.layout import validate_key

SIGNING_KEY_FILE = "signing.key"
COPY_CHUNK_BYTES = 1024 * 1024
UPLOAD_METHOD = "PUT"  # signed into upload links, so that no download link's signature is also one


class LocalStorage(Storage):
    """Objects as files under ``root/objects``, served by the API through HMAC-signed URLs.

    Writes go to a temp file under ``root/tmp`` and are renamed into place, so readers see the old
    or the new object, never part of one. Content types live in ``root/meta/<key>.json``.
    """

    def __init__(self, root: Path, *, base_url: str, secret: bytes, min_free_bytes: int = 0) -> None:
        if not secret:
            raise ValueError("LocalStorage needs a non-empty signing secret")
        self.root = Path(root)
        self.min_free_bytes = min_free_bytes
        self.base_url = base_url.rstrip("/")
        self._secret = bytes(secret)
        self._objects = self.root / "objects"
        self._meta = self.root / "meta"
        self._tmp = self.root / "tmp"
        try:
            for directory in (self._objects, self._meta, self._tmp):
                directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the storage directory {self.root}: {exc}") from exc

    # -- paths --

    def _object_path(self, key: str) -> Path:
        validate_key(key)
        return self._objects / key

    def _meta_path(self, key: str) -> Path:
        return self._meta / f"{key}.json"

    def _atomic_write(self, target: Path, data: bytes | BinaryIO) -> int:
        """Write ``data`` (bytes, or a stream copied in chunks from its position) to ``target``; its size."""
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                if isinstance(data, bytes | bytearray | memoryview):
                    handle.write(data)
                else:
                    shutil.copyfileobj(data, handle, COPY_CHUNK_BYTES)
                written = handle.tell()
                handle.flush()
                os.fsync(handle.fileno())
            for attempt in range(5):
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(tmp, target)
                    return written
                except FileNotFoundError:
                    # A concurrent delete pruned the now-empty parent directory; recreate it and retry.
                    if attempt == 4:
                        raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _prune(self, directory: Path, stop: Path) -> None:
        """Remove empty directories from ``directory`` up to (not including) ``stop``."""
        while directory != stop and stop in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def _remove(self, key: str) -> bool:
        path = self._objects / key
        try:
            path.unlink()
            removed = True
        except FileNotFoundError:
            removed = False
        self._meta_path(key).unlink(missing_ok=True)
        self._prune(path.parent, self._objects)
        self._prune(self._meta_path(key).parent, self._meta)
        return removed

    # -- Storage --

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._write(key, bytes(data), content_type)

    def put_file(self, key: str, source: BinaryIO, content_type: str) -> int:
        return self._write(key, source, content_type)

    def _write(self, key: str, data: bytes | BinaryIO, content_type: str) -> int:
        path = self._object_path(key)
        try:
            written = self._atomic_write(path, data)
            self._atomic_write(self._meta_path(key), json.dumps({"content_type": content_type}).encode())
        except OSError as exc:
            raise StorageError(f"writing {key!r} to {self.root} failed: {exc}") from exc
        return written

    def copy(self, source: str, key: str) -> None:
        """Read in chunks into a temp file renamed into place: a new file, so its mtime (retention) is now."""
        source_path = self._object_path(source)
        target = self._object_path(key)
        try:
            stream = source_path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(f"no object {source!r}") from exc
        except OSError as exc:
            raise StorageError(f"reading {source!r} from {self.root} failed: {exc}") from exc
        try:
            with stream:
                self._atomic_write(target, stream)
            self._atomic_write(self._meta_path(key), json.dumps({"content_type": self.content_type(source)}).encode())
        except OSError as exc:
            raise StorageError(f"copying {source!r} to {key!r} in {self.root} failed: {exc}") from exc

    def get(self, key: str) -> bytes:
        path = self._object_path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(f"no object {key!r}") from exc
        except OSError as exc:
            raise StorageError(f"reading {key!r} from {self.root} failed: {exc}") from exc

    def delete(self, key: str) -> None:
        validate_key(key)
        try:
            self._remove(key)
        except (IsADirectoryError, NotADirectoryError):
            return
        except OSError as exc:
            raise StorageError(f"deleting {key!r} from {self.root} failed: {exc}") from exc

    def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            validate_key(key)
        for key in keys:
            self.delete(key)

    def delete_prefix(self, prefix: str, *, older_than: float | None = None) -> int:
        validate_key(prefix, prefix=True)
        directory, _, name_start = prefix.rpartition("/")
        base = self._objects / directory if directory else self._objects
        keys: list[str] = []
        try:
            if not base.is_dir():
                return 0
            for entry in os.scandir(base):
                if not entry.name.startswith(name_start):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    for walk_root, _, files in os.walk(entry.path):
                        keys.extend(Path(walk_root, name).relative_to(self._objects).as_posix() for name in files)
                else:
                    keys.append(Path(entry.path).relative_to(self._objects).as_posix())
            if older_than is not None:
                keys = [key for key in keys if self._object_path(key).stat().st_mtime < older_than]
            return sum(self._remove(key) for key in keys)
        except FileNotFoundError:
            return 0  # deleted meanwhile by another cleaner
        except OSError as exc:
            raise StorageError(f"deleting {prefix!r}* from {self.root} failed: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._object_path(key).is_file()

    def size(self, key: str) -> int:
        path = self._object_path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r}")
        try:
            return path.stat().st_size
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no object {key!r}") from exc
        except OSError as exc:
            raise StorageError(f"reading {key!r} from {self.root} failed: {exc}") from exc

    def url(self, key: str, *, expires_in: int, filename: str | None = None) -> str:
        validate_key(key)
        check_expiry(expires_in)
        expires = int(time.time()) + expires_in
        query = {"expires": str(expires), "signature": self._sign(key, expires, filename)}
        if filename is not None:
            query["filename"] = filename
        return f"{self.base_url}/v1/files/{quote(key, safe='/')}?{urlencode(query, quote_via=quote)}"

    def upload_url(self, key: str, *, expires_in: int, content_type: str, content_length: int) -> str:
        """A link to ``PUT /v1/files/<key>`` on the API, signed like downloads but for an upload of
        exactly ``content_type`` and ``content_length``."""
        validate_key(key)
        check_expiry(expires_in)
        expires = int(time.time()) + expires_in
        query = {
            "expires": str(expires),
            "content_length": str(content_length),
            "signature": self._sign_upload(key, expires, content_type, content_length),
        }
        return f"{self.base_url}/v1/files/{quote(key, safe='/')}?{urlencode(query, quote_via=quote)}"

    def check(self) -> None:
        for directory in (self._objects, self._meta, self._tmp):
            if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
                raise StorageError(f"the storage directory {directory} is missing or not writable")
        free = shutil.disk_usage(self._objects).free
        if free < self.min_free_bytes:
            raise StorageFull(f"{free} bytes free under {self.root}, below the minimum of {self.min_free_bytes}")

    # -- for the API, which serves the files --

    def file_server(self) -> FileServer:
        """This store itself: its URLs point at the API, which checks their signature and sends the file."""
        return self

    def _sign(self, key: str, expires: int, filename: str | None) -> str:
        # JSON keeps the fields unambiguous: no key/filename split can collide with another.
        return self._hmac([key, int(expires), filename])

    def _sign_upload(self, key: str, expires: int, content_type: str, content_length: int) -> str:
        return self._hmac([UPLOAD_METHOD, key, int(expires), content_type, int(content_length)])

    def _hmac(self, fields: list[object]) -> str:
        message = json.dumps(fields, separators=(",", ":")).encode("ascii")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    @staticmethod
    def _valid(key: str, expires: int, signature: str, expected: Callable[[], str], now: float | None) -> bool:
        """Whether the link of ``key`` has not expired and carries the ``expected`` signature (constant-time)."""
        if (time.time() if now is None else now) > expires:
            return False
        try:
            validate_key(key)
        except ValueError:
            return False
        return hmac.compare_digest(expected().encode("ascii"), signature.encode("utf-8", "replace"))

    def verify_upload_signature(
        self, key: str, expires: int, content_type: str, content_length: int, signature: str, now: float | None = None
    ) -> bool:
        """Whether an upload link's parameters were signed by us and have not expired."""
        return self._valid(
            key, expires, signature, lambda: self._sign_upload(key, expires, content_type, content_length), now
        )

    def verify_url_signature(
        self, key: str, expires: int, signature: str, filename: str | None, now: float | None = None
    ) -> bool:
        """Whether a download URL's parameters were signed by us and have not expired (constant-time)."""
        return self._valid(key, expires, signature, lambda: self._sign(key, expires, filename), now)

    def open_path(self, key: str) -> Path:
        """The file holding ``key``, for sending; ``ObjectNotFound`` when absent."""
        path = self._object_path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r}")
        return path

    def content_type(self, key: str) -> str:
        """The content type given at ``put``; guessed from the key's suffix if unrecorded."""
        validate_key(key)
        try:
            recorded = json.loads(self._meta_path(key).read_text()).get("content_type")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if isinstance(recorded, str) and recorded:
            return recorded
        return mimetypes.guess_type(key)[0] or DEFAULT_CONTENT_TYPE


def local_secret(data_dir: Path, configured: str) -> bytes:
    """The HMAC key of LocalStorage URLs: ``configured`` if set, else one kept in ``data_dir/signing.key``.

    The file is created once (64 hex characters from 32 random bytes, mode 0600) and shared, so the
    API and worker processes using one data dir sign and verify alike. Creation is race-free: the
    key is written to a temp file and hard-linked into place, and a loser of the race reads the winner's.
    Setting ``BACKDROP_SIGNING_SECRET`` to the file's content yields the same key.
    """
    if configured:
        return configured.encode("utf-8")
    data_dir = Path(data_dir)
    path = data_dir / SIGNING_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=data_dir, prefix=".signing-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with suppress(FileExistsError):  # another process won the race: use its key
                os.link(tmp_name, path)
        finally:
            os.unlink(tmp_name)
    secret = path.read_bytes().strip()
    if len(secret) < 16:
        raise ValueError(f"{path} does not hold a usable signing key; delete it to have a new one created")
    return secret
