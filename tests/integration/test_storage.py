"""Both storage backends against the same behaviour; S3 through a real moto server over HTTP."""

from __future__ import annotations

import os
import stat
import time
import urllib.request
import uuid
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from common.errors import ObjectNotFound, StorageError
from common.settings import Settings
from common.storage import (
    LocalStorage,
    S3Storage,
    Storage,
    attachment_disposition,
    background_key,
    input_key,
    job_prefix,
    local_secret,
    result_key,
    storage_from_settings,
)
from tests.integration.conftest import S3_TEST_ACCESS_KEY, S3_TEST_SECRET_KEY, free_port

SECRET = b"0123456789abcdef0123456789abcdef"
BASE_URL = "http://api.example:8080"
BAD_KEYS = ["", "../escape", "a/../../escape", "/absolute", "a\\b", "a//b", "a/./b", "a/", "a/\x00b", ".."]


def new_bucket() -> str:
    return f"test-{uuid.uuid4().hex[:20]}"


def make_s3(endpoint: str, bucket: str, **kwargs: object) -> S3Storage:
    options: dict[str, object] = {
        "bucket": bucket,
        "endpoint_url": endpoint,
        "access_key_id": S3_TEST_ACCESS_KEY,
        "secret_access_key": S3_TEST_SECRET_KEY,
    }
    options.update(kwargs)
    return S3Storage(**options)  # type: ignore[arg-type]


def download(url: str) -> tuple[bytes, Message]:
    """GET ``url`` without any proxy; returns the body and the response headers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.read(), response.headers


@pytest.fixture(params=["s3", "local"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "s3":
        backend: Storage = make_s3(request.getfixturevalue("s3_server"), new_bucket(), create_bucket=True)
    else:
        backend = LocalStorage(tmp_path / "storage", base_url=BASE_URL, secret=SECRET)
    with backend:
        yield backend


@pytest.fixture
def s3(s3_server: str) -> Iterator[S3Storage]:
    with make_s3(s3_server, new_bucket(), create_bucket=True) as backend:
        yield backend


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage", base_url=BASE_URL + "/", secret=SECRET)


# --- the same behaviour from both backends ----------------------------------------------------


def test_put_get_roundtrip(storage: Storage) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    storage.put(input_key("job1"), data, "image/png")
    storage.put(result_key("job1", "composite.jpg"), b"", "image/jpeg")
    assert storage.get(input_key("job1")) == data
    assert storage.get(result_key("job1", "composite.jpg")) == b""


def test_get_of_absent_key_is_object_not_found(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound) as info:
        storage.get(input_key("missing"))
    assert info.value.code == "not_found"
    assert info.value.http_status == 404


def test_overwrite_keeps_one_object(storage: Storage) -> None:
    key = result_key("job1", "composite.png")
    storage.put(key, b"first attempt", "image/png")
    storage.put(key, b"retry", "image/png")
    assert storage.get(key) == b"retry"
    assert storage.delete_prefix("results/job1/") == 1


def test_exists_and_delete(storage: Storage) -> None:
    key = input_key("job1")
    assert not storage.exists(key)
    storage.put(key, b"x", "image/jpeg")
    assert storage.exists(key)
    assert not storage.exists("inputs")  # a prefix is not an object
    storage.delete(key)
    assert not storage.exists(key)
    storage.delete(key)  # absent is fine
    with pytest.raises(ObjectNotFound):
        storage.get(key)


def test_delete_prefix_removes_one_job_only(storage: Storage) -> None:
    for job in ("job-a", "job-b"):
        storage.put(input_key(job), b"in", "image/jpeg")
        storage.put(background_key(job), b"bg", "image/jpeg")
        storage.put(result_key(job, "composite.jpg"), b"out", "image/jpeg")
        storage.put(result_key(job, "mask.png"), b"mask", "image/png")
    assert sum(storage.delete_prefix(prefix) for prefix in job_prefix("job-a")) == 4
    assert not storage.exists(input_key("job-a"))
    assert not storage.exists(background_key("job-a"))
    assert not storage.exists(result_key("job-a", "mask.png"))
    assert storage.get(input_key("job-b")) == b"in"
    assert storage.get(background_key("job-b")) == b"bg"
    assert storage.get(result_key("job-b", "mask.png")) == b"mask"
    assert sum(storage.delete_prefix(prefix) for prefix in job_prefix("job-a")) == 0
    assert storage.delete_prefix("nothing/here/") == 0


def test_delete_many_removes_exactly_those_keys(storage: Storage) -> None:
    for job in ("job-a", "job-b"):
        storage.put(input_key(job), b"in", "image/jpeg")
        storage.put(result_key(job, "composite.jpg"), b"out", "image/jpeg")
    storage.delete_many([input_key("job-a"), result_key("job-a", "composite.jpg"), background_key("job-a")])
    assert not storage.exists(input_key("job-a")) and not storage.exists(result_key("job-a", "composite.jpg"))
    assert storage.get(input_key("job-b")) == b"in" and storage.get(result_key("job-b", "composite.jpg")) == b"out"
    storage.delete_many([input_key("job-a")])  # absent is fine
    storage.delete_many([])
    with pytest.raises(ValueError):
        storage.delete_many([input_key("job-b"), "../escape"])
    assert storage.exists(input_key("job-b"))  # every key is checked before anything is deleted


def test_copy_is_a_new_object_with_the_source_bytes(storage: Storage) -> None:
    data = bytes(range(256)) * 64
    storage.put("uploads/owner/photo", data, "image/png")
    storage.put(input_key("job-a"), b"an older photo", "image/jpeg")
    time.sleep(1.2)  # S3's LastModified counts whole seconds
    cutoff = float(int(time.time()))  # after the source was written, at or before the copy
    storage.copy("uploads/owner/photo", input_key("job-a"))
    assert storage.get(input_key("job-a")) == data and storage.get("uploads/owner/photo") == data
    server = storage.file_server()
    if server is None:  # S3: the bucket serves its own URLs, with the type the object was stored with
        body, headers = download(storage.url(input_key("job-a"), expires_in=60))
        assert body == data
        content_type = headers["Content-Type"]
    else:
        content_type = server.content_type(input_key("job-a"))
    assert content_type == "image/png"  # the source's, not the replaced object's
    # Retention reads the copy's own time: the source is older than the cut-off, the copy is not.
    assert storage.delete_prefix("uploads/", older_than=cutoff) == 1
    assert storage.delete_prefix("inputs/", older_than=cutoff) == 0
    assert storage.get(input_key("job-a")) == data
    with pytest.raises(ObjectNotFound):
        storage.copy("uploads/owner/photo", input_key("job-b"))
    assert not storage.exists(input_key("job-b"))
    with pytest.raises(ValueError):
        storage.copy("../escape", input_key("job-b"))
    with pytest.raises(ValueError):
        storage.copy(input_key("job-a"), "../escape")


def test_url_is_a_time_limited_download_link(storage: Storage) -> None:
    key = result_key("job1", "composite.jpg")
    storage.put(key, b"jpeg bytes", "image/jpeg")
    url = storage.url(key, expires_in=600, filename="portrait.jpg")
    query = parse_qs(urlsplit(url).query)
    if isinstance(storage, LocalStorage):
        # The API that serves these does not exist yet: check the shape and the signature.
        assert url.startswith(f"{BASE_URL}/v1/files/{key}?")
        expires = int(query["expires"][0])
        assert time.time() + 590 < expires <= time.time() + 600
        assert query["filename"] == ["portrait.jpg"]
        assert storage.verify_url_signature(key, expires, query["signature"][0], "portrait.jpg")
        assert storage.open_path(key).read_bytes() == b"jpeg bytes"
        assert storage.content_type(key) == "image/jpeg"
    else:
        assert query["X-Amz-Expires"] == ["600"]
        body, headers = download(url)
        assert body == b"jpeg bytes"
        assert headers["Content-Disposition"] == attachment_disposition("portrait.jpg")


def test_only_a_backend_whose_urls_point_at_the_api_serves_files(storage: Storage) -> None:
    key = result_key("job1", "composite.png")
    storage.put(key, b"png bytes", "image/png")
    server = storage.file_server()
    if isinstance(storage, LocalStorage):
        assert server is storage
        query = parse_qs(urlsplit(storage.url(key, expires_in=60)).query)
        assert server.verify_url_signature(key, int(query["expires"][0]), query["signature"][0], None)
        assert server.open_path(key).read_bytes() == b"png bytes"
        assert server.content_type(key) == "image/png"
    else:
        assert server is None


def test_url_rejects_out_of_range_expiry(storage: Storage) -> None:
    storage.put("k", b"x", "text/plain")
    for expires_in in (0, -1, 7 * 24 * 3600 + 1):
        with pytest.raises(ValueError):
            storage.url("k", expires_in=expires_in)


def test_check_passes(storage: Storage) -> None:
    storage.check()


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(ValueError):
        storage.put(key, b"x", "text/plain")
    with pytest.raises(ValueError):
        storage.get(key)
    with pytest.raises(ValueError):
        storage.url(key, expires_in=60)
    with pytest.raises(ValueError):
        storage.delete(key)


def test_key_builders() -> None:
    assert input_key("abc") == "inputs/abc"
    assert result_key("abc", "composite.jpg") == "results/abc/composite.jpg"
    assert background_key("abc") == "backgrounds/abc"
    assert job_prefix("abc") == ["inputs/abc", "backgrounds/abc", "results/abc/"]
    for bad in ("", "a/b", "..", ".", "a\\b", "a\nb"):
        with pytest.raises(ValueError):
            input_key(bad)
        with pytest.raises(ValueError):
            result_key("abc", bad)
        with pytest.raises(ValueError):
            background_key(bad)


def test_attachment_disposition() -> None:
    assert attachment_disposition("portrait.jpg") == 'attachment; filename="portrait.jpg"'
    assert attachment_disposition('../a"b\r\n.png') == "attachment; filename=\"a_b.png\"; filename*=UTF-8''a%22b.png"
    assert attachment_disposition("") == 'attachment; filename="download"'
    value = attachment_disposition("Zoë.png")
    assert value == "attachment; filename=\"Zo_.png\"; filename*=UTF-8''Zo%C3%AB.png"


# --- S3 specifics ---------------------------------------------------------------------------------


def test_s3_bucket_is_created_when_asked(s3_server: str) -> None:
    bucket = new_bucket()
    with make_s3(s3_server, bucket, create_bucket=True) as first:
        first.check()
        first.put("k", b"v", "text/plain")
    with make_s3(s3_server, bucket, create_bucket=True) as again:  # already there: kept, not an error
        assert again.get("k") == b"v"


def test_s3_missing_bucket_is_not_created_and_fails_check(s3_server: str) -> None:
    with make_s3(s3_server, new_bucket(), create_bucket=False) as missing:
        with pytest.raises(StorageError, match="does not exist") as info:
            missing.check()
        assert info.value.code == "storage_unavailable"
        assert info.value.http_status == 503
        with pytest.raises(StorageError):
            missing.put("k", b"v", "text/plain")
        with pytest.raises(StorageError):  # a missing bucket is not a missing object
            missing.get("k")


def test_s3_presigned_url_uses_the_public_endpoint(s3_server: str) -> None:
    port = urlsplit(s3_server).port
    public = f"http://localhost:{port}"
    with make_s3(s3_server, new_bucket(), public_endpoint_url=public, create_bucket=True) as s3:
        s3.put("results/j/composite.png", b"png bytes", "image/png")
        before = time.time()
        url = s3.url("results/j/composite.png", expires_in=900)
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == public
        assert parts.path == f"/{s3.bucket}/results/j/composite.png"  # path-style
        query = parse_qs(parts.query)
        assert query["X-Amz-Expires"] == ["900"]
        signed_at = time.mktime(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")) - time.timezone
        assert before - 5 <= signed_at <= time.time() + 5
        assert "response-content-disposition" not in query
        body, headers = download(url)
        assert body == b"png bytes"
        assert headers["Content-Type"] == "image/png"


def test_s3_filename_sets_content_disposition(s3: S3Storage) -> None:
    s3.put("results/j/composite", b"data", "application/octet-stream")
    url = s3.url("results/j/composite", expires_in=60, filename="Zoë photo.webp")
    query = parse_qs(urlsplit(url).query)
    assert query["response-content-disposition"] == [attachment_disposition("Zoë photo.webp")]
    assert query["response-content-type"] == ["image/webp"]
    body, headers = download(url)
    assert body == b"data"
    assert headers["Content-Disposition"] == attachment_disposition("Zoë photo.webp")
    assert headers["Content-Type"] == "image/webp"


def test_s3_delete_prefix_follows_pages(s3: S3Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3, "list_page_size", 2)
    for index in range(5):
        s3.put(f"results/j/{index}.png", b"x", "image/png")
    s3.put("results/k/0.png", b"x", "image/png")
    assert s3.delete_prefix("results/j/") == 5
    assert s3.exists("results/k/0.png")


def test_s3_delete_many_sends_pages_of_keys(s3: S3Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3, "list_page_size", 2)
    calls: list[int] = []
    real = s3._client.delete_objects

    def delete_objects(**kwargs: Any) -> Any:
        calls.append(len(kwargs["Delete"]["Objects"]))
        return real(**kwargs)

    monkeypatch.setattr(s3._client, "delete_objects", delete_objects)
    keys = [result_key("j", f"{index}.png") for index in range(5)]
    for key in keys:
        s3.put(key, b"x", "image/png")
    s3.put(result_key("k", "0.png"), b"x", "image/png")
    s3.delete_many(keys)
    assert calls == [2, 2, 1]  # one request per page, not one per key
    assert [key for key in keys if s3.exists(key)] == [] and s3.exists(result_key("k", "0.png"))


def test_s3_unreachable_endpoint_is_a_storage_error() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with make_s3(endpoint, "any-bucket", connect_timeout=1, read_timeout=1, max_attempts=1) as down:
        for call in (
            down.check,
            lambda: down.put("k", b"v", "text/plain"),
            lambda: down.get("k"),
            lambda: down.exists("k"),
            lambda: down.delete_prefix("k"),
        ):
            with pytest.raises(StorageError):
                call()
        assert down.url("k", expires_in=60).startswith(endpoint)  # presigning needs no network
    # A process must start even when its storage is down: the bucket is then made on first use.
    with make_s3(endpoint, "any-bucket", create_bucket=True, connect_timeout=1, max_attempts=1) as later:
        for call in (later.check, lambda: later.put("k", b"v", "text/plain")):
            with pytest.raises(StorageError):
                call()


def test_storage_from_settings_s3(s3_server: str) -> None:
    settings = Settings(
        storage="s3",
        s3_bucket=new_bucket(),
        s3_endpoint_url=s3_server,
        s3_access_key_id=S3_TEST_ACCESS_KEY,
        s3_secret_access_key=S3_TEST_SECRET_KEY,
        s3_create_bucket=True,
    )
    with storage_from_settings(settings) as backend:
        assert isinstance(backend, S3Storage)
        backend.check()


# --- LocalStorage specifics -------------------------------------------------------------------


def _signed(local: LocalStorage, key: str, filename: str | None = None) -> tuple[int, str]:
    query = parse_qs(urlsplit(local.url(key, expires_in=300, filename=filename)).query)
    assert ("filename" in query) == (filename is not None)
    return int(query["expires"][0]), query["signature"][0]


def test_local_signature_verification(local: LocalStorage) -> None:
    key = result_key("job1", "composite.png")
    local.put(key, b"x", "image/png")
    expires, signature = _signed(local, key)
    assert local.verify_url_signature(key, expires, signature, None)
    assert not local.verify_url_signature(result_key("job2", "composite.png"), expires, signature, None)
    assert not local.verify_url_signature(key, expires + 1, signature, None)
    assert not local.verify_url_signature(key, expires, signature, None, now=expires + 1)
    assert local.verify_url_signature(key, expires, signature, None, now=expires)
    assert not local.verify_url_signature(key, expires, signature, "added.png")
    assert not local.verify_url_signature(key, expires, signature.upper(), None)
    assert not local.verify_url_signature(key, expires, "", None)
    assert not local.verify_url_signature(key, expires, "zoë", None)

    expires, signature = _signed(local, key, filename="portrait.png")
    assert local.verify_url_signature(key, expires, signature, "portrait.png")
    assert not local.verify_url_signature(key, expires, signature, "other.png")
    assert not local.verify_url_signature(key, expires, signature, None)
    assert not local.verify_url_signature(key, expires, signature, "")

    other = LocalStorage(local.root, base_url=BASE_URL, secret=b"another secret")
    assert not other.verify_url_signature(key, expires, signature, "portrait.png")
    assert not local.verify_url_signature("../escape", expires, signature, "portrait.png")


def test_local_url_quotes_key_and_filename(local: LocalStorage) -> None:
    url = local.url("results/j/a b.png", expires_in=60, filename="my photo&x=1.png")
    parts = urlsplit(url)
    assert parts.path == "/v1/files/results/j/a%20b.png"
    query = parse_qs(parts.query)
    assert query["filename"] == ["my photo&x=1.png"]
    assert local.verify_url_signature(
        unquote(parts.path.removeprefix("/v1/files/")),
        int(query["expires"][0]),
        query["signature"][0],
        "my photo&x=1.png",
    )


@pytest.mark.parametrize("key", ["../outside", "a/../../outside", "/tmp/outside", "a\\..\\outside"])
def test_local_path_traversal_is_refused(local: LocalStorage, key: str) -> None:
    with pytest.raises(ValueError):
        local.put(key, b"x", "text/plain")
    with pytest.raises(ValueError):
        local.open_path(key)
    with pytest.raises(ValueError):
        local.delete_prefix(key)
    assert not (local.root.parent / "outside").exists()
    assert not any(local.root.parent.glob("**/outside"))


def _files(directory: Path) -> list[str]:
    return sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file())


def test_local_atomic_write_leaves_no_temp_files(local: LocalStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    key = result_key("job1", "composite.jpg")
    local.put(key, b"old", "image/jpeg")
    local.put(key, b"new", "image/jpeg")
    assert _files(local.root / "objects") == ["results/job1/composite.jpg"]
    assert _files(local.root / "tmp") == []

    def failing_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(StorageError, match="No space left"):
        local.put(key, b"never visible", "image/jpeg")
    monkeypatch.undo()
    assert local.get(key) == b"new"
    assert _files(local.root / "tmp") == []
    assert _files(local.root / "objects") == ["results/job1/composite.jpg"]


def test_local_delete_prunes_empty_directories(local: LocalStorage) -> None:
    local.put(result_key("job1", "a.png"), b"a", "image/png")
    local.put(result_key("job1", "b.png"), b"b", "image/png")
    local.put(input_key("job1"), b"i", "image/png")
    assert sum(local.delete_prefix(prefix) for prefix in job_prefix("job1")) == 3
    assert list((local.root / "objects").iterdir()) == []
    assert list((local.root / "meta").iterdir()) == []
    local.put(result_key("job1", "a.png"), b"again", "image/png")  # directories come back on demand
    assert local.get(result_key("job1", "a.png")) == b"again"


def test_local_open_path_and_content_type(local: LocalStorage) -> None:
    local.put(input_key("job1"), b"bytes", "image/heic")
    assert local.open_path(input_key("job1")).read_bytes() == b"bytes"
    assert local.content_type(input_key("job1")) == "image/heic"
    with pytest.raises(ObjectNotFound):
        local.open_path(input_key("job2"))
    with pytest.raises(ObjectNotFound):
        local.open_path("inputs")  # a directory is not an object
    path = local.root / "objects" / "results" / "j" / "legacy.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"png")
    assert local.content_type("results/j/legacy.png") == "image/png"  # unrecorded: from the suffix
    assert local.content_type("results/j/unknown") == "application/octet-stream"


def test_local_check_fails_when_directory_is_gone(local: LocalStorage) -> None:
    local.check()
    (local.root / "tmp").rmdir()
    with pytest.raises(StorageError):
        local.check()


def test_local_secret_is_created_once_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = local_secret(data_dir, "")
    key_file = data_dir / "signing.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) == 64
    bytes.fromhex(first.decode())  # 32 random bytes, hex-encoded
    assert local_secret(data_dir, "") == first
    assert local_secret(tmp_path / "other", "") != first
    assert [path.name for path in data_dir.iterdir()] == ["signing.key"]  # no temp file left


def test_local_secret_prefers_the_configured_one(tmp_path: Path) -> None:
    assert local_secret(tmp_path, "configured secret") == b"configured secret"
    assert not (tmp_path / "signing.key").exists()
    generated = local_secret(tmp_path, "")
    assert local_secret(tmp_path, "configured secret") == b"configured secret"
    assert local_secret(tmp_path, generated.decode()) == generated  # the file's content works as a setting


def test_local_secret_refuses_an_unusable_key_file(tmp_path: Path) -> None:
    (tmp_path / "signing.key").write_bytes(b"\n")
    with pytest.raises(ValueError, match="signing key"):
        local_secret(tmp_path, "")


def test_storage_from_settings_local_shares_the_key(tmp_path: Path) -> None:
    settings = Settings(storage="local", data_dir=tmp_path, public_base_url="http://localhost:8080")
    api_side = storage_from_settings(settings)
    worker_side = storage_from_settings(settings)
    assert isinstance(api_side, LocalStorage)
    assert isinstance(worker_side, LocalStorage)
    assert api_side.root == tmp_path / "storage"
    worker_side.put("inputs/j", b"x", "image/png")
    url = worker_side.url("inputs/j", expires_in=60)
    assert url.startswith("http://localhost:8080/v1/files/inputs/j?")
    query = parse_qs(urlsplit(url).query)
    assert api_side.verify_url_signature("inputs/j", int(query["expires"][0]), query["signature"][0], None)
    assert api_side.get("inputs/j") == b"x"
