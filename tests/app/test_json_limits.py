"""JSON bodies have a small limit of their own, refused before they are parsed, and no error body
echoes a large value back."""

from __future__ import annotations

import json

from flask.testing import FlaskClient

from api.app import MAX_FORM_FIELD_BYTES
from api.errors import MAX_MESSAGE_CHARS
from common.settings import Settings

# An error body: the code, a message cut to MAX_MESSAGE_CHARS and a short note, the JSON around them.
SHORT_BODY = MAX_MESSAGE_CHARS + 200


def test_a_large_json_batch_is_refused_before_it_is_parsed(client: FlaskClient, auth: dict, settings: Settings) -> None:
    urls = [f"https://example.invalid/{index:08d}.jpg" for index in range(20 * 2**20 // 40)]
    body = json.dumps({"image_urls": urls}).encode()
    assert len(body) > 20 * 2**20
    response = client.post("/v1/batches", data=body, headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"
    assert str(settings.max_json_body_bytes) in response.json["error"]["message"]
    assert len(response.data) < SHORT_BODY


def test_a_json_body_under_the_limit_is_parsed(client: FlaskClient, auth: dict, settings: Settings) -> None:
    path = "a" * 1500  # few jobs (under the pending quota), long URLs
    urls = [f"https://example.invalid/{path}/{index:06d}.jpg" for index in range(500)]
    body = json.dumps({"image_urls": urls}).encode()
    assert settings.max_json_body_bytes // 2 < len(body) < settings.max_json_body_bytes
    response = client.post("/v1/batches", data=body, headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 202, response.json
    assert response.json["total"] == len(urls)


def test_a_large_value_is_not_echoed(client: FlaskClient, auth: dict) -> None:
    value = "x" * 500_000  # under the JSON limit, and far above any message
    for body in (
        {"image_urls": ["https://example.invalid/a.jpg"], "options": {"background": value}},
        {"keys": [f"uploads/{value}"]},
        {"image_urls": [f"ftp://{value}"]},
        {"image_urls": ["https://example.invalid/a.jpg"], "options": {"quality": value}},
    ):
        response = client.post("/v1/batches", json=body, headers=auth)
        assert 400 <= response.status_code < 500, response.status_code
        assert len(response.data) < SHORT_BODY, response.data[:200]
        assert "more characters not shown" in response.json["error"]["message"] or value not in response.text


def test_a_large_multipart_option_is_refused_without_echo(client: FlaskClient, auth: dict) -> None:
    data = {"background": "y" * (MAX_FORM_FIELD_BYTES + 1)}  # a text field above the form's in-memory limit
    response = client.post("/v1/jobs", data=data, headers=auth, content_type="multipart/form-data")
    assert response.status_code == 413
    assert len(response.data) < SHORT_BODY
