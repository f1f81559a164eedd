"""Both storage backends store a stream without reading it whole, report sizes, and sign upload URLs;
S3 through a real moto server over HTTP."""

from __future__ import annotations

import io
import os
from urllib.parse import parse_qs, urlsplit

import pytest

from common.errors import ObjectNotFound
from common.storage import LocalStorage, S3Storage, Storage
from common.storage.s3 import TRANSFER_CHUNK_BYTES
from tests.integration.stack import http
from tests.integration.test_storage import local, s3, storage

__all__ = ["local", "s3", "storage"]


class CountingReader(io.RawIOBase):
    """A stream of ``size`` bytes that records the largest read asked of it."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.largest_read = max(self.largest_read, len(buffer))
        return self._data.readinto(buffer)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._data.seek(offset, whence)

    def tell(self) -> int:
        return self._data.tell()


@pytest.mark.parametrize("size", [1000, TRANSFER_CHUNK_BYTES * 2 + 123])
def test_put_file_stores_a_stream_in_pieces(storage: Storage, size: int) -> None:
    data = os.urandom(size)
    source = CountingReader(b"skipped" + data)
    source.seek(len(b"skipped"))  # from the stream's position to its end
    assert storage.put_file("uploads/a/photo", source, "image/png") == size
    assert storage.get("uploads/a/photo") == data
    assert storage.size("uploads/a/photo") == size
    assert source.largest_read <= TRANSFER_CHUNK_BYTES  # never the whole file in one read
    with pytest.raises(ObjectNotFound):
        storage.size("uploads/a/absent")


def test_put_file_leaves_the_callers_stream_open(storage: Storage) -> None:
    data = os.urandom(3000)
    source = io.BytesIO(data)  # boto3's transfer manager closes the file object it is handed
    assert storage.put_file("uploads/a/plain", source, "image/png") == len(data)
    assert not source.closed and source.tell() == len(data)
    assert storage.get("uploads/a/plain") == data


def test_s3_upload_urls_take_a_put_of_the_signed_type(s3: S3Storage) -> None:
    photo = os.urandom(5000)
    url = s3.upload_url("uploads/a/x", expires_in=600, content_type="image/jpeg", content_length=len(photo))
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["600"]
    assert set(query["X-Amz-SignedHeaders"][0].split(";")) >= {"content-length", "content-type", "host"}
    response = http("PUT", url, photo, {"Content-Type": "image/jpeg"})
    assert response.status == 200
    assert s3.get("uploads/a/x") == photo


def test_local_upload_links_are_bound_to_key_type_size_and_time(local: LocalStorage) -> None:
    url = local.upload_url("uploads/a/x", expires_in=60, content_type="image/png", content_length=10)
    query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    assert urlsplit(url).path == "/v1/files/uploads/a/x"
    expires, signature = int(query["expires"]), query["signature"]
    assert local.verify_upload_signature("uploads/a/x", expires, "image/png", 10, signature)
    for key, content_type, length in [("uploads/a/y", "image/png", 10), ("uploads/a/x", "image/gif", 10),
                                      ("uploads/a/x", "image/png", 11)]:  # fmt: skip
        assert not local.verify_upload_signature(key, expires, content_type, length, signature)
    assert not local.verify_upload_signature("uploads/a/x", expires, "image/png", 10, signature, now=expires + 1)
    # A download link's signature is not an upload link's, and the other way round.
    download = parse_qs(urlsplit(local.url("uploads/a/x", expires_in=60)).query)
    assert not local.verify_upload_signature("uploads/a/x", expires, "image/png", 10, download["signature"][0])
    assert not local.verify_url_signature("uploads/a/x", expires, signature, None)
