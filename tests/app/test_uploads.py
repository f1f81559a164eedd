"""``POST /v1/uploads`` on local storage: signed PUT links the API receives itself, under each key's
own prefix, which a JSON batch then names by key; no key reaches another key's objects."""

from __future__ import annotations

import os
import time
from urllib.parse import parse_qs, urlsplit, urlunsplit

from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from common.settings import Settings
from common.storage import input_key
from tests.app.conftest import png
from worker.retention import delete_expired


def _targets(client: FlaskClient, auth: dict, *sizes: int, content_type: str = "image/png") -> list[dict]:
    files = [{"content_type": content_type, "bytes": size} for size in sizes]
    response = client.post("/v1/uploads", json={"files": files}, headers=auth)
    assert response.status_code == 201, response.json
    return response.json["uploads"]


def _put(client: FlaskClient, url: str, data: bytes, content_type: str = "image/png") -> int:
    parts = urlsplit(url)
    return client.put(
        urlunsplit(("", "", parts.path, parts.query, "")), data=data, content_type=content_type
    ).status_code


def _owner(auth: dict) -> str:
    token = auth.get("Authorization", "").removeprefix("Bearer ") or auth["X-Api-Key"]
    return token.removeprefix("bd_").split("_", 1)[0]


def test_upload_then_batch_by_key(app: Flask, client: FlaskClient, auth: dict) -> None:
    photo = png(80, 60, seed=3)
    (target,) = _targets(client, auth, len(photo))
    assert target["key"].startswith(f"uploads/{_owner(auth)}/") and target["method"] == "PUT"
    assert target["headers"] == {"Content-Type": "image/png", "Content-Length": str(len(photo))}
    assert _put(client, target["url"], photo) == 201
    api = app.extensions["backdrop"]
    assert api.storage.get(target["key"]) == photo
    batch = client.post("/v1/batches", json={"keys": [target["key"]]}, headers=auth)
    assert batch.status_code == 202, batch.json
    job = api.jobs.get(batch.json["jobs"][0]["id"])
    assert job.status.value == "queued"
    assert job.input_key == input_key(job.id) and api.storage.get(job.input_key) == photo  # the job's own copy
    assert api.storage.get(target["key"]) == photo  # the upload stays the caller's


def _age(app: Flask, key: str, seconds_old: float) -> None:
    """Make the local object under ``key`` look written ``seconds_old`` seconds ago (retention reads mtime)."""
    server = app.extensions["backdrop"].storage.file_server()
    assert server is not None  # local storage
    path = server.open_path(key)
    then = time.time() - seconds_old
    os.utime(path, (then, then))


def test_an_accepted_job_keeps_its_photo_past_the_uploads_retention(
    app: Flask, client: FlaskClient, auth: dict
) -> None:
    """An upload named a minute before its retention runs out: the sweep after that deletes the upload,
    not the photo of the job the batch made of it."""
    api = app.extensions["backdrop"]
    ttl = api.settings.job_ttl_seconds
    photo = png(seed=7)
    (target,) = _targets(client, auth, len(photo))
    assert _put(client, target["url"], photo) == 201
    _age(app, target["key"], ttl - 60)
    batch = client.post("/v1/batches", json={"keys": [target["key"]]}, headers=auth)
    assert batch.status_code == 202, batch.json
    _age(app, target["key"], ttl + 1)  # the minute has passed; the job still waits in the queue
    assert delete_expired(api.storage, api.settings) == 1
    assert not api.storage.exists(target["key"])
    job = api.jobs.get(batch.json["jobs"][0]["id"])
    assert job.status.value == "queued" and api.storage.get(job.input_key) == photo


def test_a_job_runs_the_photo_its_batch_was_accepted_with(app: Flask, client: FlaskClient, auth: dict) -> None:
    """The upload replaced after the batch was accepted (the signed link is still valid, same size and
    type): the job's photo is the one that was checked, not the replacement."""
    api = app.extensions["backdrop"]
    photo = png(seed=8)
    other = photo[:-20] + bytes(20)  # another photo's bytes, of the same size
    (target,) = _targets(client, auth, len(photo))
    assert _put(client, target["url"], photo) == 201
    batch = client.post("/v1/batches", json={"keys": [target["key"]]}, headers=auth)
    assert batch.status_code == 202, batch.json
    assert _put(client, target["url"], other) == 201
    job = api.jobs.get(batch.json["jobs"][0]["id"])
    assert api.storage.get(target["key"]) == other and api.storage.get(job.input_key) == photo


def test_a_key_reaches_only_its_own_uploads(app: Flask, client: FlaskClient, auth: dict) -> None:
    api = app.extensions["backdrop"]
    photo = png(seed=4)
    (target,) = _targets(client, auth, len(photo))
    assert _put(client, target["url"], photo) == 201
    api.storage.put("tenants/a/private-passport.png", photo, "image/png")  # outside every prefix
    other = {"X-Api-Key": api.api_keys.create("other").token}
    answers = []
    for key in (
        target["key"],  # another key's upload
        "tenants/a/private-passport.png",  # an object outside any prefix
        f"uploads/{_owner(other)}/absent",  # absent, under its own prefix
        "inputs/" + "0" * 32,  # one of Backdrop's own prefixes
    ):
        response = client.post("/v1/batches", json={"keys": [key]}, headers=other)
        answers.append((response.status_code, response.json))
    assert answers[0][0] == 404 and answers[0][1]["error"]["code"] == "not_found"
    assert all(answer == answers[0] for answer in answers), answers  # present or not, the same answer
    assert api.redis.keys("backdrop:job:*") == []


def test_upload_links_are_checked(app: Flask, client: FlaskClient, auth: dict) -> None:
    photo = png(seed=5)
    (target,) = _targets(client, auth, len(photo))
    url = target["url"]
    query = parse_qs(urlsplit(url).query)
    tampered = url.replace(query["signature"][0], "0" * 64)
    assert _put(client, tampered, photo) == 403
    assert _put(client, url, photo, content_type="image/jpeg") == 403  # not the signed type
    assert _put(client, url, photo + b"more") == 400  # not the signed size
    elsewhere = url.replace(target["key"], f"uploads/{_owner(auth)}/chosen-by-client")
    assert _put(client, elsewhere, photo) == 403  # the key is signed too
    assert not app.extensions["backdrop"].storage.exists(target["key"])
    assert _put(client, url, photo) == 201


def test_upload_requests_are_bounded(client: FlaskClient, auth: dict, app: Flask) -> None:
    limit = app.extensions["backdrop"].settings.max_upload_bytes
    too_big = client.post("/v1/uploads", json={"files": [{"bytes": limit + 1}]}, headers=auth)
    assert too_big.status_code == 400 and too_big.json["error"]["code"] == "invalid_input"
    html = client.post("/v1/uploads", json={"files": [{"bytes": 10, "content_type": "text/html"}]}, headers=auth)
    assert html.status_code == 422
    assert client.post("/v1/uploads", json={"files": [{"bytes": 10}]}).status_code == 401


def test_without_keys_every_client_shares_the_anonymous_prefix(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"auth": "disabled"}))
    try:
        client = app.test_client()
        photo = png(seed=6)
        (target,) = _targets(client, {}, len(photo))
        assert target["key"].startswith("uploads/anonymous/")
        assert _put(client, target["url"], photo) == 201
        assert client.post("/v1/batches", json={"keys": [target["key"]]}).status_code == 202
        assert client.post("/v1/batches", json={"keys": ["uploads/someone/x"]}).status_code == 404
    finally:
        app.extensions["backdrop"].redis.close()
