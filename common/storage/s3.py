"""The S3-compatible backend: AWS S3, MinIO, R2 and the like, through boto3.

boto3 is imported when an ``S3Storage`` is made, so processes on local storage never load it.
"""

from __future__ import annotations

import io
import logging
import mimetypes
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO, NoReturn

from common.errors import ObjectNotFound, StorageError
from common.storage.base import Storage, attachment_disposition, check_expiry
from common.storage.layout import validate_key

log = logging.getLogger(__name__)

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
# Part size of streamed uploads (S3's minimum part is 5 MiB); a file up to this size is one PUT.
TRANSFER_CHUNK_BYTES = 8 * 1024 * 1024
# Connections kept open to the endpoint (botocore keeps 10): a process runs many storage requests at once
# (an API process's request threads, a batch's 16 uploads or key checks, a zip's 8 reads ahead).
MAX_POOL_CONNECTIONS = 32


class _Lent(io.RawIOBase):
    """The caller's stream as boto3's transfer manager is handed it: it closes what it is given, and the
    stream is the caller's to close (the API's spooled parts share one file)."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._source.seekable()

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._source.seek(offset, whence)

    def tell(self) -> int:
        return self._source.tell()


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
            max_pool_connections=MAX_POOL_CONNECTIONS,
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

    def put_file(self, key: str, source: BinaryIO, content_type: str) -> int:
        """Streamed by boto3's managed transfer: one PUT for a small file, a multipart upload of
        ``TRANSFER_CHUNK_BYTES`` parts for a larger one, never the whole file in memory."""
        from boto3.exceptions import S3UploadFailedError
        from boto3.s3.transfer import TransferConfig

        validate_key(key)
        self._ensure_bucket_once()
        start = source.tell()
        config = TransferConfig(
            multipart_threshold=TRANSFER_CHUNK_BYTES, multipart_chunksize=TRANSFER_CHUNK_BYTES, use_threads=False
        )
        with self._translate("writing", key):
            try:
                self._client.upload_fileobj(
                    _Lent(source), self.bucket, key, ExtraArgs={"ContentType": content_type}, Config=config
                )
            except S3UploadFailedError as exc:  # the transfer manager's wrapper of a failed part
                raise StorageError(f"writing s3://{self.bucket}/{key} failed: {exc}") from exc
        return source.tell() - start

    def copy(self, source: str, key: str) -> None:
        """One ``CopyObject`` inside the bucket (up to 5 GB, S3's bound for it; uploads are far smaller),
        with the source's content type; the copy's ``LastModified`` is now."""
        validate_key(source)
        validate_key(key)
        self._ensure_bucket_once()
        with self._translate("copying", source):
            self._client.copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": source})

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

    def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            validate_key(key)
        for start in range(0, len(keys), self.list_page_size):
            page = keys[start : start + self.list_page_size]
            with self._translate("deleting", page[0]):
                self._delete_objects([{"Key": key} for key in page], f"s3://{self.bucket}/{page[0]} and others")

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
                self._delete_objects(keys, f"under s3://{self.bucket}/{prefix}")
                deleted += len(keys)
        return deleted

    def _delete_objects(self, objects: list[dict[str, str]], where: str) -> None:
        """One ``DeleteObjects`` request (at most 1000 keys); a key it could not delete is a StorageError."""
        response = self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise StorageError(
                f"deleting {len(errors)} object(s) {where} failed, e.g. "
                f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip()
            )

    def exists(self, key: str) -> bool:
        validate_key(key)
        try:
            with self._translate("checking", key):
                self._client.head_object(Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            return False
        return True

    def size(self, key: str) -> int:
        validate_key(key)
        with self._translate("checking", key):
            return int(self._client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])

    def upload_url(self, key: str, *, expires_in: int, content_type: str, content_length: int) -> str:
        """A presigned ``PUT``: Content-Type and Content-Length are signed headers, so S3 refuses a body
        of another size or type (a presigned PUT cannot say "at most"; the size is declared up front)."""
        validate_key(key)
        check_expiry(expires_in)
        params = {"Bucket": self.bucket, "Key": key, "ContentType": content_type, "ContentLength": content_length}
        with self._translate("signing an upload URL for", key):
            return self._presigner.generate_presigned_url("put_object", Params=params, ExpiresIn=expires_in)

    def url(self, key: str, *, expires_in: int, filename: str | None = None) -> str:
        validate_key(key)
        check_expiry(expires_in)
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
