"""Object storage for uploads and results: one interface, an S3-compatible and a local-disk backend.

Workers and the API only see ``Storage``; which backend runs is a setting. Transient failures
(network, timeouts, 5xx, bad credentials) surface as ``StorageError`` so callers can retry them,
and a missing object as ``ObjectNotFound``. Object keys are built here, in one place, and are
deterministic per job so a retried job overwrites its objects instead of duplicating them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import mimetypes
import os
import secrets
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self
from urllib.parse import quote, urlencode

from common.errors import ObjectNotFound, StorageError
from common.settings import Settings

log = logging.getLogger(__name__)

MAX_URL_EXPIRY_SECONDS = 7 * 24 * 3600  # the SigV4 limit; LocalStorage keeps the same bound
DEFAULT_CONTENT_TYPE = "application/octet-stream"
SIGNING_KEY_FILE = "signing.key"


# --- keys -----------------------------------------------------------------------------------


def _check_segment(value: str, what: str) -> None:
    """One path segment of a key: non-empty, no separators, no control characters, not '.' or '..'."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if "/" in value or "\\" in value or value in (".", "..") or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"invalid {what}: {value!r}")


def validate_key(key: str, *, prefix: bool = False) -> None:
    """Refuse keys that could escape a directory or mean different things to different backends.

    A key is '/'-separated segments, none empty, '.' or '..', with no backslash or control character
    and no leading '/'. A prefix may also end with '/'.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("a storage key must be a non-empty string")
    segments = key.split("/")
    if prefix and len(segments) > 1 and segments[-1] == "":
        segments = segments[:-1]
    for segment in segments:
        _check_segment(segment, "storage key segment" if segment else f"storage key {key!r} (empty segment)")


# Every object Backdrop writes lives under one of these; retention sweeps them.
JOB_OBJECT_PREFIXES = ("inputs/", "backgrounds/", "results/")


def input_key(job_id: str) -> str:
    """Where a job's uploaded image lives."""
    _check_segment(job_id, "job id")
    return f"inputs/{job_id}"


def background_key(job_id: str) -> str:
    """Where a job's uploaded background image lives (when the client sent one)."""
    _check_segment(job_id, "job id")
    return f"backgrounds/{job_id}"


def result_key(job_id: str, name: str) -> str:
    """Where one of a job's outputs lives, e.g. ``result_key(job_id, "composite.jpg")``."""
    _check_segment(job_id, "job id")
    _check_segment(name, "result name")
    return f"results/{job_id}/{name}"


def job_prefix(job_id: str) -> list[str]:
    """The prefixes holding all of a job's objects, for ``delete_prefix``.

    Prefixes match as plain string prefixes (as in S3), so job ids must not be prefixes of one
    another; fixed-length ids (UUIDs) guarantee that.
    """
    _check_segment(job_id, "job id")
    return [input_key(job_id), background_key(job_id), f"results/{job_id}/"]


def attachment_disposition(filename: str) -> str:
    """A ``Content-Disposition: attachment`` value naming ``filename`` safely (RFC 6266, with a UTF-8 form)."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if ord(c) >= 32 and ord(c) != 127).strip() or "download"
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    if fallback == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _check_expiry(expires_in: int) -> None:
    if not 1 <= expires_in <= MAX_URL_EXPIRY_SECONDS:
        raise ValueError(f"expires_in must be between 1 and {MAX_URL_EXPIRY_SECONDS} seconds, got {expires_in}")


# --- interface ------------------------------------------------------------------------------


class Storage(ABC):
    """A flat key -> bytes store with time-limited download URLs."""

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing any previous object atomically."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under ``key``; ``ObjectNotFound`` when absent."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; an absent key is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str, *, older_than: float | None = None) -> int:
        """Remove every key starting with ``prefix`` (a plain string prefix), or only those last written
        before the unix time ``older_than`` (retention); returns how many were removed."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    @abstractmethod
    def url(self, key: str, *, expires_in: int, filename: str | None = None) -> str:
        """A download URL valid for ``expires_in`` seconds; ``filename`` makes it an attachment with that name."""

    @abstractmethod
    def check(self) -> None:
        """Readiness probe: raise ``StorageError`` when the store cannot be used."""

    def close(self) -> None:
        """Release connections; the default holds none."""
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- S3-compatible --------------------------------------------------------------------------

_AUTH_ERROR_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "AllAccessDisabled",
    }
)
_MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "NotFound", "404"})


class S3Storage(Storage):
    """AWS S3, MinIO, R2 or any S3-compatible store, addressed path-style with SigV4.

    Requests go to ``endpoint_url``; presigned URLs are written for ``public_endpoint_url`` (a second
    client, never used for requests: presigning needs no network) so they point where clients can
    reach, e.g. ``http://localhost:9000`` while workers talk to ``http://minio:9000``.
    ``max_attempts`` counts every attempt, the first included.
    """

    list_page_size = 1000  # keys per listing page and per batch delete (the S3 maximum)

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        create_bucket: bool = False,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
    ) -> None:
        import boto3
        from botocore.config import Config

        if not bucket:
            raise ValueError("an S3 bucket name is required")
        self.bucket = bucket
        self.region = region
        self.endpoint_url = endpoint_url
        self.public_endpoint_url = public_endpoint_url or endpoint_url
        session = boto3.session.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
        )
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Many S3-compatible servers reject the newer default CRC checksums; send them only when required.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)
        self._presigner: Any = session.client("s3", endpoint_url=self.public_endpoint_url, config=config)
        # With create_bucket, the bucket is made on first use when the store is unreachable now:
        # a process must be able to start (and report itself not ready) before its storage is up.
        self._bucket_pending = create_bucket
        if create_bucket:
            try:
                self._ensure_bucket_once()
            except StorageError as exc:
                log.warning("bucket %r not checked yet, will retry on first use: %s", bucket, exc.message)

    # -- errors --

    def _raise(self, exc: Exception, action: str, key: str | None = None) -> NoReturn:
        """Translate a botocore failure into ``ObjectNotFound`` or ``StorageError``."""
        from botocore.exceptions import ClientError

        where = f"s3://{self.bucket}/{key}" if key is not None else f"s3://{self.bucket}"
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if key is not None and code in _MISSING_OBJECT_CODES:
                raise ObjectNotFound(f"no object at {where}") from exc
            if code == "NoSuchBucket" or (key is None and status == 404):
                raise StorageError(f"{action} {where}: the bucket {self.bucket!r} does not exist") from exc
            if code in _AUTH_ERROR_CODES or status in (401, 403):
                raise StorageError(
                    f"{action} {where}: access refused ({code or status}); check the S3 access key, secret "
                    "and the bucket's permissions"
                ) from exc
            raise StorageError(
                f"{action} {where} failed: {code or status} {error.get('Message', '')}".rstrip()
            ) from exc
        raise StorageError(f"{action} {where} failed: {type(exc).__name__}: {exc}") from exc

    @contextmanager
    def _translate(self, action: str, key: str | None = None) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            yield
        except ParamValidationError:
            raise  # a bug in the caller, not a storage failure
        except (ClientError, BotoCoreError, Urllib3Error) as exc:
            self._raise(exc, action, key)

    def _ensure_bucket_once(self) -> None:
        if self._bucket_pending:
            self._ensure_bucket()
            self._bucket_pending = False

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        with self._translate("checking"):
            try:
                self._client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status != 404 and exc.response.get("Error", {}).get("Code") not in ("NoSuchBucket", "404"):
                    raise
        params: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        with self._translate("creating"):
            try:
                self._client.create_bucket(**params)
            except ClientError as exc:
                # Another process created it between our check and our create.
                if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise

    # -- Storage --

    def put(self, key: str, data: bytes, content_type: str) -> None:
        validate_key(key)
        self._ensure_bucket_once()
        with self._translate("writing", key):
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        validate_key(key)
        with self._translate("reading", key):
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                return body.read()
            finally:
                body.close()

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._translate("deleting", key):
            self._client.delete_object(Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str, *, older_than: float | None = None) -> int:
        validate_key(prefix, prefix=True)
        deleted = 0
        with self._translate("deleting prefix", prefix):
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(
                Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self.list_page_size}
            ):
                keys = [
                    {"Key": item["Key"]}
                    for item in page.get("Contents", [])
                    if older_than is None or item["LastModified"].timestamp() < older_than
                ]
                if not keys:
                    continue
                response = self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                errors = response.get("Errors", [])
                if errors:
                    first = errors[0]
                    raise StorageError(
                        f"deleting {len(errors)} object(s) under s3://{self.bucket}/{prefix} failed, e.g. "
                        f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip()
                    )
                deleted += len(keys)
        return deleted

    def exists(self, key: str) -> bool:
        validate_key(key)
        try:
            with self._translate("checking", key):
                self._client.head_object(Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            return False
        return True

    def url(self, key: str, *, expires_in: int, filename: str | None = None) -> str:
        validate_key(key)
        _check_expiry(expires_in)
        params: dict[str, str] = {"Bucket": self.bucket, "Key": key}
        if filename is not None:
            params["ResponseContentDisposition"] = attachment_disposition(filename)
            guessed, _ = mimetypes.guess_type(filename)
            if guessed:
                params["ResponseContentType"] = guessed
        with self._translate("signing a URL for", key):
            return self._presigner.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)

    def check(self) -> None:
        self._ensure_bucket_once()
        with self._translate("checking"):
            self._client.head_bucket(Bucket=self.bucket)

    def close(self) -> None:
        for client in (getattr(self, "_client", None), getattr(self, "_presigner", None)):
            if client is not None:
                client.close()


# --- local disk -----------------------------------------------------------------------------


class LocalStorage(Storage):
    """Objects as files under ``root/objects``, served by the API through HMAC-signed URLs.

    Writes go to a temp file under ``root/tmp`` and are renamed into place, so readers see the old
    or the new object, never part of one. Content types live in ``root/meta/<key>.json``.
    """

    def __init__(self, root: Path, *, base_url: str, secret: bytes) -> None:
        if not secret:
            raise ValueError("LocalStorage needs a non-empty signing secret")
        self.root = Path(root)
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

    def _atomic_write(self, target: Path, data: bytes) -> None:
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            for attempt in range(5):
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(tmp, target)
                    return
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
        path = self._object_path(key)
        try:
            self._atomic_write(path, bytes(data))
            self._atomic_write(self._meta_path(key), json.dumps({"content_type": content_type}).encode())
        except OSError as exc:
            raise StorageError(f"writing {key!r} to {self.root} failed: {exc}") from exc

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

    def url(self, key: str, *, expires_in: int, filename: str | None = None) -> str:
        validate_key(key)
        _check_expiry(expires_in)
        expires = int(time.time()) + expires_in
        query = {"expires": str(expires), "signature": self._sign(key, expires, filename)}
        if filename is not None:
            query["filename"] = filename
        return f"{self.base_url}/v1/files/{quote(key, safe='/')}?{urlencode(query, quote_via=quote)}"

    def check(self) -> None:
        for directory in (self._objects, self._meta, self._tmp):
            if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
                raise StorageError(f"the storage directory {directory} is missing or not writable")

    # -- for the API, which serves the files --

    def _sign(self, key: str, expires: int, filename: str | None) -> str:
        # JSON keeps the fields unambiguous: no key/filename split can collide with another.
        message = json.dumps([key, int(expires), filename], separators=(",", ":")).encode("ascii")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def verify_url_signature(
        self, key: str, expires: int, signature: str, filename: str | None, now: float | None = None
    ) -> bool:
        """Whether a download URL's parameters were signed by us and have not expired (constant-time)."""
        if (time.time() if now is None else now) > expires:
            return False
        try:
            validate_key(key)
        except ValueError:
            return False
        expected = self._sign(key, expires, filename).encode("ascii")
        return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))

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


def storage_from_settings(settings: Settings) -> Storage:
    """The storage backend the settings select."""
    if settings.storage == "s3":
        return S3Storage(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            create_bucket=settings.s3_create_bucket,
        )
    if settings.storage == "local":
        return LocalStorage(
            settings.data_dir / "storage",
            base_url=settings.public_base_url,
            secret=local_secret(settings.data_dir, settings.signing_secret),
        )
    raise ValueError(f"unknown storage backend {settings.storage!r}")
