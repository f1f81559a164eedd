"""Malformed requests and damaged records get typed 4xx errors, never a 500 or a 503."""

from __future__ import annotations

import io

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

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


def test_a_huge_prefer_wait_is_capped_not_a_500(app: Flask, client: FlaskClient, auth: dict) -> None:
    """A wait of 5,000 digits (past Python's int-parsing limit) is the longest wait, as any N above it."""
    data = {"image": (io.BytesIO(png()), "p.png")}
    headers = {**auth, "Prefer": "wait=" + "9" * 5000}
    api = app.extensions["backdrop"]
    api.settings = api.settings.model_copy(update={"max_wait_seconds": 1})
    response = client.post("/v1/jobs", data=data, headers=headers, content_type="multipart/form-data")
    assert response.status_code == 202, response.json
    assert response.headers["Preference-Applied"] == "wait=1"


@pytest.mark.parametrize("field", ["image", "background_image"])
def test_a_text_part_where_a_file_belongs_is_a_400(client: FlaskClient, auth: dict, field: str) -> None:
    data: dict = {"image": (io.BytesIO(png()), "p.png"), "background": "image"}
    data[field] = "not a file"
    if field == "image":
        data["background_image"] = (io.BytesIO(png(seed=1)), "b.png")
    response = client.post("/v1/jobs", data=data, headers=auth, content_type="multipart/form-data")
    assert (response.status_code, response.json["error"]["code"]) == (400, "invalid_input"), response.json
    assert field in response.json["error"]["message"]


@pytest.mark.parametrize("field", ["image", "background_image"])
def test_two_files_in_a_one_file_field_are_a_400(client: FlaskClient, auth: dict, app: Flask, field: str) -> None:
    data: dict = {"image": (io.BytesIO(png()), "p.png"), "background_image": (io.BytesIO(png(seed=1)), "b.png")}
    data[field] = [(io.BytesIO(png(seed=2)), "one.png"), (io.BytesIO(png(seed=3)), "two.png")]
    data["background"] = "image"
    response = client.post("/v1/jobs", data=data, headers=auth, content_type="multipart/form-data")
    assert (response.status_code, response.json["error"]["code"]) == (400, "invalid_input"), response.json
    assert field in response.json["error"]["message"]
    assert app.extensions["backdrop"].redis.keys("backdrop:job:*") == []


@pytest.mark.parametrize(
    "options",
    [
        {"id_spec": "custom", "custom_size": "1" + "0" * 400 + "x10px"},
        {"id_spec": "custom", "custom_size": "35x" + "9" * 400 + "mm"},
        {"id_spec": "icao-35x45", "max_kb": "inf"},
        {"id_spec": "icao-35x45", "min_kb": "nan"},
        {"id_spec": "icao-35x45", "max_kb": "1e999"},
    ],
)
def test_numbers_out_of_every_range_are_invalid_options(client: FlaskClient, auth: dict, options: dict) -> None:
    for body in (
        {"image": (io.BytesIO(png()), "p.png"), **options},
        None,  # the same options in a JSON batch
    ):
        if body is None:
            response = client.post(
                "/v1/batches", json={"image_urls": ["https://127.0.0.1/a.jpg"], "options": options}, headers=auth
            )
        else:
            response = client.post("/v1/jobs", data=body, headers=auth, content_type="multipart/form-data")
        assert response.status_code in (400, 422), (options, response.status_code, response.data[:300])
        assert response.json["error"]["code"] in ("invalid_option", "invalid_spec"), response.json


def test_a_text_part_among_a_batchs_images_is_a_400(client: FlaskClient, auth: dict, app: Flask) -> None:
    data = {"images": [(io.BytesIO(png()), "p.png"), "not a file"]}
    response = client.post("/v1/batches", data=data, headers=auth, content_type="multipart/form-data")
    assert (response.status_code, response.json["error"]["code"]) == (400, "invalid_input"), response.json
    assert "images" in response.json["error"]["message"]
    assert app.extensions["backdrop"].redis.keys("backdrop:batch:*") == []


def test_a_photo_wider_than_webp_holds_is_refused_at_once(client: FlaskClient, auth: dict, app: Flask) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (16_400, 32), (90, 120, 150)).save(buffer, "PNG")  # one colour: a small body
    wide = buffer.getvalue()
    data = {"image": (io.BytesIO(wide), "wide.png"), "format": "webp"}
    response = client.post("/v1/jobs", data=data, headers=auth, content_type="multipart/form-data")
    assert (response.status_code, response.json["error"]["code"]) == (413, "image_too_large"), response.json
    assert "WEBP" in response.json["error"]["message"] and "format=png" in response.json["error"]["message"]
    batch = client.post(
        "/v1/batches",
        data={"images": [(io.BytesIO(wide), "wide.png"), (io.BytesIO(png()), "p.png")], "format": "webp"},
        headers=auth,
        content_type="multipart/form-data",
    )
    assert batch.status_code == 202, batch.json
    statuses = [(job["status"], (job.get("error") or {}).get("code")) for job in batch.json["jobs"]]
    assert statuses == [("failed", "image_too_large"), ("queued", None)]  # the wide photo fails alone
    as_png = client.post(
        "/v1/jobs",
        data={"image": (io.BytesIO(wide), "wide.png"), "format": "png"},
        headers=auth,
        content_type="multipart/form-data",
    )
    assert as_png.status_code == 202, as_png.json


def test_a_bad_background_image_is_named_as_the_background(client: FlaskClient, auth: dict) -> None:
    data = {"image": (io.BytesIO(png()), "p.png"), "background": "image"}
    data["background_image"] = (io.BytesIO(png(20, 20)), "tiny.png")
    response = client.post("/v1/jobs", data=data, headers=auth, content_type="multipart/form-data")
    assert response.json["error"]["code"] == "image_too_small", response.json
    assert response.json["error"]["message"].startswith("background_image: "), response.json
