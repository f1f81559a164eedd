"""Validation, authentication, idempotency and error mapping of the jobs API, in-process."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from common.jobs import JobStatus
from common.settings import Settings
from tests.app.conftest import png


def submit(client: FlaskClient, headers: dict[str, str], image: bytes | None = None, **fields: Any) -> Any:
    data: dict[str, Any] = dict(fields)
    if image is not None:
        data["image"] = (io.BytesIO(image), "photo.png")
    return client.post("/v1/jobs", data=data, headers=headers, content_type="multipart/form-data")


def test_a_valid_job_is_recorded_queued_with_its_options(app: Flask, client: FlaskClient, auth: dict) -> None:
    response = submit(client, auth, png(), background="#112233", outputs="matte,composite", quality="80")
    assert response.status_code == 202, response.json
    body = response.json
    assert body["status"] == "queued" and response.headers["Location"] == f"/v1/jobs/{body['id']}"
    assert body["options"]["outputs"] == ["composite", "matte"] and body["options"]["quality"] == 80
    assert body["input"] == {"bytes": len(png()), "format": "PNG", "width": 64, "height": 48, "url": None}
    stored = app.extensions["backdrop"].jobs.get(body["id"])
    assert stored is not None and stored.status is JobStatus.QUEUED and stored.options.background == "#112233"
    assert app.extensions["backdrop"].storage.get(stored.input_key) == png()


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"background": "purple"}, "invalid_option"),
        ({"format": "gif"}, "invalid_option"),
        ({"quality": "0"}, "invalid_option"),
        ({"quality": "high"}, "invalid_option"),
        ({"outputs": "composite,thumbnail"}, "invalid_option"),
        ({"background": "transparent", "format": "jpeg"}, "invalid_option"),
        ({"background": "image"}, "invalid_option"),
        ({"webhook_events": "finished"}, "invalid_option"),
        ({"webhook_url": "ftp://example.invalid/hook"}, "unsafe_url"),
        ({"colour": "blue"}, "invalid_option"),
    ],
)
def test_bad_options_are_refused_before_anything_is_stored(
    app: Flask, client: FlaskClient, auth: dict, fields: dict[str, str], code: str
) -> None:
    response = submit(client, auth, png(), **fields)
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == code and response.json["error"]["message"]
    assert app.extensions["backdrop"].jobs.pending_count("tests") == 0
    assert not list(app.extensions["backdrop"].redis.scan_iter("backdrop:job:*"))


def test_exactly_one_photo(client: FlaskClient, auth: dict) -> None:
    missing = submit(client, auth, None, background="blue")
    both = submit(client, auth, png(), image_url="https://example.invalid/a.jpg")
    assert missing.status_code == both.status_code == 400
    assert missing.json["error"]["code"] == both.json["error"]["code"] == "invalid_input"


def test_a_text_file_is_not_an_image(client: FlaskClient, auth: dict) -> None:
    response = submit(client, auth, b"hello, this is text")
    assert (response.status_code, response.json["error"]["code"]) == (415, "unsupported_image")


def test_background_image_implies_background_image_mode(app: Flask, client: FlaskClient, auth: dict) -> None:
    data = {"image": (io.BytesIO(png()), "p.png"), "background_image": (io.BytesIO(png(seed=1)), "b.png")}
    response = client.post("/v1/jobs", data=data, headers=auth, content_type="multipart/form-data")
    assert response.status_code == 202, response.json
    job = app.extensions["backdrop"].jobs.get(response.json["id"])
    assert job.options.background == "image" and job.background_image_key is not None
    conflicting = {**data, "background": "red"}
    conflicting["image"] = (io.BytesIO(png()), "p.png")
    conflicting["background_image"] = (io.BytesIO(png(seed=1)), "b.png")
    refused = client.post("/v1/jobs", data=conflicting, headers=auth, content_type="multipart/form-data")
    assert (refused.status_code, refused.json["error"]["code"]) == (422, "invalid_option")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer bd_nope_nope"}, {"X-Api-Key": "not-a-key"}, {"Authorization": "Basic eDp5"}],
)
def test_requests_without_a_valid_key_are_refused(client: FlaskClient, headers: dict[str, str]) -> None:
    response = submit(client, headers, png())
    assert (response.status_code, response.json["error"]["code"]) == (401, "unauthorized")


def test_a_revoked_key_is_refused_and_another_key_sees_404(app: Flask, client: FlaskClient, auth: dict) -> None:
    job_id = submit(client, auth, png()).json["id"]
    keys = app.extensions["backdrop"].api_keys
    other = keys.create("other")
    other_auth = {"X-Api-Key": other.token}
    assert client.get(f"/v1/jobs/{job_id}", headers=other_auth).status_code == 404
    keys.revoke(other.key.id)
    assert client.get(f"/v1/jobs/{job_id}", headers=other_auth).status_code == 401
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 200


def test_idempotency_key_replays_the_same_job_and_refuses_another_body(client: FlaskClient, auth: dict) -> None:
    headers = {**auth, "Idempotency-Key": "order-1"}
    first = submit(client, headers, png(), background="red")
    again = submit(client, headers, png(), background="red")
    assert first.status_code == again.status_code == 202
    assert again.json["id"] == first.json["id"] and again.headers["Idempotent-Replayed"] == "true"
    changed = submit(client, headers, png(), background="green")
    assert (changed.status_code, changed.json["error"]["code"]) == (422, "idempotency_key_reused")
    other_key = submit(client, {**auth, "Idempotency-Key": "order-2"}, png(), background="red")
    assert other_key.json["id"] != first.json["id"]


def test_pending_quota(settings: Settings, auth: dict) -> None:
    app = create_app(settings.model_copy(update={"max_pending_jobs": 2}))
    client = app.test_client()
    assert [submit(client, auth, png(seed=i)).status_code for i in range(2)] == [202, 202]
    refused = submit(client, auth, png(seed=3))
    assert (refused.status_code, refused.json["error"]["code"]) == (429, "too_many_pending_jobs")
    assert refused.headers["Retry-After"] == "5"


def test_cancel_then_delete(app: Flask, client: FlaskClient, auth: dict) -> None:
    job_id = submit(client, auth, png()).json["id"]
    api = app.extensions["backdrop"]
    input_key = api.jobs.get(job_id).input_key
    canceled = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    assert canceled.status_code == 200 and canceled.json["status"] == "canceled"
    assert "Retry-After" not in canceled.headers
    assert client.delete(f"/v1/jobs/{job_id}", headers=auth).status_code == 204
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 404
    assert not api.storage.exists(input_key) and api.jobs.get(job_id) is None


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/jobs/0123456789abcdef", 404, "not_found"),
        ("PUT", "/v1/jobs", 405, "method_not_allowed"),
        ("GET", "/v1/nothing-here", 404, "not_found"),
        ("GET", "/v1/batches/0123", 404, "not_found"),
    ],
)
def test_errors_are_mapped_to_one_body(
    client: FlaskClient, auth: dict, method: str, path: str, status: int, code: str
) -> None:
    response = client.open(path, method=method, headers=auth)
    assert response.status_code == status
    assert response.json["error"]["code"] == code and isinstance(response.json["error"]["message"], str)


def test_an_oversized_body_is_413(settings: Settings, auth: dict) -> None:
    app = create_app(settings.model_copy(update={"max_upload_bytes": 4096}))
    response = submit(app.test_client(), auth, b"\0" * 200_000)
    assert (response.status_code, response.json["error"]["code"]) == (413, "payload_too_large")


def test_redis_down_is_503_queue_unavailable(tmp_path) -> None:
    dead = Settings(redis_url="redis://127.0.0.1:1/0", data_dir=tmp_path, auth="disabled")
    app = create_app(dead)
    response = submit(app.test_client(), {}, png())
    assert (response.status_code, response.json["error"]["code"]) == (503, "queue_unavailable")
    assert response.headers["Retry-After"] == "5"
    assert "127.0.0.1" not in response.json["error"]["message"]


def test_a_photo_by_url_has_no_made_up_size(client: FlaskClient, auth: dict) -> None:
    response = submit(client, auth, image_url="https://example.invalid/photo.jpg")
    assert response.status_code == 202, response.json
    assert response.json["input"] == {
        "bytes": None,
        "format": None,
        "width": None,
        "height": None,
        "url": "https://example.invalid/photo.jpg",
    }
