"""Malformed requests and damaged records get typed 4xx errors, never a 500 or a 503."""

from __future__ import annotations

import io

import pytest
from flask import Flask
from flask.testing import FlaskClient

from common import keyspace
from tests.app.conftest import png


@pytest.mark.parametrize("key", ["../x", "/x", "..", "a/../b", "a//b", ""])
def test_batch_keys_that_are_not_object_keys(client: FlaskClient, auth: dict, key: str) -> None:
    response = client.post("/v1/batches", json={"keys": [key]}, headers=auth)
    assert response.status_code in (400, 422), response.json
    assert response.json["error"]["code"] in ("invalid_input", "invalid_option")


@pytest.mark.parametrize("body", [[], ["https://example.invalid/a.jpg"], {"options": "blue"}, {"image_urls": "x"}, 3])
def test_json_batches_of_the_wrong_shape(client: FlaskClient, auth: dict, body: object) -> None:
    response = client.post("/v1/batches", json=body, headers=auth)
    assert (response.status_code, response.json["error"]["code"]) == (422, "invalid_option"), response.json


@pytest.mark.parametrize("suffix", [":jobs", ":completed", "/../x"])
def test_ids_that_name_other_redis_keys_are_not_found(client: FlaskClient, auth: dict, app: Flask, suffix: str) -> None:
    batch = client.post("/v1/batches", json={"image_urls": ["https://example.invalid/a.jpg"]}, headers=auth).json
    job_id = batch["jobs"][0]["id"]
    for path in (f"/v1/batches/{batch['id']}{suffix}", f"/v1/jobs/{job_id}{suffix}"):
        response = client.get(path, headers=auth)
        assert (response.status_code, response.json["error"]["code"]) == (404, "not_found"), path


def test_a_page_beyond_every_job_is_empty(client: FlaskClient, auth: dict) -> None:
    batch = client.post("/v1/batches", json={"image_urls": ["https://example.invalid/a.jpg"]}, headers=auth).json
    response = client.get(f"/v1/batches/{batch['id']}?page=9223372036854775807", headers=auth)
    assert response.status_code == 200, response.json
    assert response.json["jobs"] == [] and response.json["next_page"] is None and response.json["total"] == 1
    too_big = client.get(f"/v1/batches/{batch['id']}?page=99999999999999999999999", headers=auth)
    assert (too_big.status_code, too_big.json["error"]["code"]) == (422, "invalid_option")


def test_a_damaged_record_is_reported_and_can_be_deleted(app: Flask, client: FlaskClient, auth: dict) -> None:
    data = {"image": (io.BytesIO(png()), "p.png")}
    job_id = client.post("/v1/jobs", data=data, headers=auth, content_type="multipart/form-data").json["id"]
    api = app.extensions["backdrop"]
    api.redis.hset(keyspace.JOB.format(job_id=job_id), "options", "{not json")
    damaged = client.get(f"/v1/jobs/{job_id}", headers=auth)
    assert (damaged.status_code, damaged.json["error"]["code"]) == (410, "record_damaged")
    other = {"X-Api-Key": api.api_keys.create("other").token}
    assert client.get(f"/v1/jobs/{job_id}", headers=other).status_code == 404
    assert client.delete(f"/v1/jobs/{job_id}", headers=other).status_code == 404
    assert client.delete(f"/v1/jobs/{job_id}", headers=auth).status_code == 204
    assert not api.redis.exists(keyspace.JOB.format(job_id=job_id))
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 404


def test_405_names_the_allowed_methods(client: FlaskClient, auth: dict) -> None:
    response = client.put("/v1/jobs", headers=auth)
    assert response.status_code == 405 and response.json["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_a_long_url_is_414_in_the_api_format(client: FlaskClient, auth: dict) -> None:
    response = client.get("/v1/jobs/" + "a" * 5000, headers=auth)
    assert (response.status_code, response.json["error"]["code"]) == (414, "uri_too_long")
    assert client.get("/v1/jobs/" + "a" * 32, headers=auth).status_code == 404
