"""Tenant-owned objects in S3 (a moto server over HTTP): each API key uploads through presigned PUT
URLs into its own prefix, and a batch may name only its own uploads; any other key, present in the
bucket or not, gets one and the same answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from common.imaging import decode_image
from common.storage import input_key
from tests.integration.stack import Stack, http
from tests.integration.test_batches import wait_batch
from tests.integration.test_service import rgba_photo

PRIVATE = "tenants/a/private-passport.png"


@pytest.fixture(scope="module")
def s3(stack_factory: Callable[..., Stack]) -> Stack:
    stack = stack_factory("s3")
    stack.start_worker(concurrency=2)
    stack.start_api()
    return stack


def _json(stack: Stack, path: str, body: object, token: str | None = "") -> tuple[int, dict]:
    response = stack.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"}, token=token)
    return response.status, response.json()


def _upload(stack: Stack, photo: bytes, token: str | None = "") -> str:
    """Upload ``photo`` through a presigned URL of ``POST /v1/uploads``; its key."""
    status, answer = _json(stack, "/v1/uploads", {"files": [{"content_type": "image/png", "bytes": len(photo)}]}, token)
    assert status == 201, answer
    (target,) = answer["uploads"]
    signed = parse_qs(urlsplit(target["url"]).query)["X-Amz-SignedHeaders"][0].split(";")
    assert {"content-length", "content-type"} <= set(signed)  # S3 refuses another size or type
    stored = http("PUT", target["url"], photo, target["headers"])
    assert stored.status == 200, stored.body
    return target["key"]


def test_upload_through_a_presigned_url_then_batch_by_key(s3: Stack) -> None:
    # Three keys: the API checks them against S3 side by side (gevent's threads), in order.
    photos = [rgba_photo(41 + i, size=(64, 80), transparent_cols=10 + i) for i in range(3)]
    keys = [_upload(s3, photo) for photo in photos]
    owner = s3.token.removeprefix("bd_").split("_", 1)[0]
    assert all(key.startswith(f"uploads/{owner}/") for key in keys)
    assert [s3.storage.get(key) for key in keys] == photos
    status, batch = _json(s3, "/v1/batches", {"keys": keys, "options": {"outputs": "cutout"}})
    assert status == 202, batch
    done = wait_batch(s3, batch["id"])
    assert done["counts"]["succeeded"] == 3, done
    for index, job in enumerate(done["jobs"]):  # in submission order
        cutout = s3.download(job["results"]["cutout"]["url"])
        rgba = decode_image(cutout.body, max_pixels=10**7, min_side=1).alpha
        assert rgba is not None and np.all(rgba[:, : 10 + index] == 0)  # the upload's own transparent columns
        assert s3.storage.get(input_key(job["id"])) == photos[index]  # the job's copy, made in the bucket
    missing = f"uploads/{owner}/never-uploaded.png"
    status, refused = _json(s3, "/v1/batches", {"keys": [keys[0], missing, keys[1]]})
    assert status == 404 and "keys[1]" in refused["error"]["message"], refused


def test_a_key_cannot_name_another_keys_object(s3: Stack) -> None:
    theirs = _upload(s3, rgba_photo(42))
    s3.storage.put(PRIVATE, rgba_photo(43), "image/png")  # in the bucket, outside every prefix
    other = s3.new_key("other tenant")
    other_id = other.removeprefix("bd_").split("_", 1)[0]
    answers = [
        _json(s3, "/v1/batches", {"keys": [key], "options": {"outputs": "cutout"}}, token=other)
        for key in (theirs, PRIVATE, f"uploads/{other_id}/never-uploaded.png", "inputs/" + "0" * 32)
    ]
    assert answers[0][0] == 404 and answers[0][1]["error"]["code"] == "not_found"
    assert all(answer == answers[0] for answer in answers), answers  # existence is not told
