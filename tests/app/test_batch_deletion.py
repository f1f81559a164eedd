"""``DELETE /v1/batches/{id}``: a batch, its jobs' records, uploads and results go in one request, its
unfinished jobs canceled first; the caller's own named uploads stay. Real Redis and local storage, the
API in-process."""

from __future__ import annotations

import io

import pytest
from flask import Flask
from flask.testing import FlaskClient

from common.errors import StorageError
from common.jobs import JobStatus
from common.queue import jobs_in_broker
from common.settings import Settings
from tests.app.conftest import new_token, png
from tests.conftest import succeed_with_composite


def _photos(count: int) -> list[tuple[io.BytesIO, str]]:
    return [(io.BytesIO(png(seed=index)), f"{index}.png") for index in range(count)]


def _batch(client: FlaskClient, auth: dict[str, str], count: int = 3) -> dict:
    data = {"images": _photos(count), "outputs": "composite,matte"}
    response = client.post("/v1/batches", data=data, headers=auth, content_type="multipart/form-data")
    assert response.status_code == 202, response.json
    return response.json


def test_deleting_a_batch_removes_its_jobs_their_objects_and_itself(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    api = app.extensions["backdrop"]
    batch = _batch(client, auth)
    done, processing, queued = (job["id"] for job in batch["jobs"])
    succeed_with_composite(api.jobs, api.storage, done, b"composite")
    api.jobs.start(processing)
    records = {job_id: api.jobs.get(job_id) for job_id in (done, processing, queued)}
    stored = [record.input_key for record in records.values()] + [records[done].results["composite"].key]
    assert all(api.storage.exists(key) for key in stored)

    assert client.delete(f"/v1/batches/{batch['id']}", headers=auth).status_code == 204
    assert [key for key in stored if api.storage.exists(key)] == []
    assert [api.jobs.get(job_id) for job_id in records] == [None, None, None]
    assert client.get(f"/v1/batches/{batch['id']}", headers=auth).status_code == 404
    assert all(client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 404 for job_id in records)
    assert api.jobs.pending_count(records[done].owner) == 0  # the quota it held is free again
    # A message still in the queue finds no record: its worker skips it.
    assert {processing, queued} <= jobs_in_broker(api.redis)
    assert client.delete(f"/v1/batches/{batch['id']}", headers=auth).status_code == 404


def test_another_keys_batch_is_not_found_and_left_whole(
    app: Flask, client: FlaskClient, auth: dict[str, str], settings: Settings
) -> None:
    api = app.extensions["backdrop"]
    batch = _batch(client, auth, 1)
    other = {"Authorization": f"Bearer {new_token(settings, 'other')}"}
    response = client.delete(f"/v1/batches/{batch['id']}", headers=other)
    assert (response.status_code, response.json["error"]["code"]) == (404, "not_found")
    (job,) = batch["jobs"]
    assert api.jobs.get(job["id"]).status is JobStatus.QUEUED
    assert api.storage.exists(api.jobs.get(job["id"]).input_key)


def test_a_named_upload_is_the_callers_and_stays(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    api = app.extensions["backdrop"]
    owner = api.api_keys.authenticate(auth["Authorization"].removeprefix("Bearer ")).id
    key = f"uploads/{owner}/portrait.png"
    api.storage.put(key, png(seed=7), "image/png")
    response = client.post("/v1/batches", json={"keys": [key]}, headers=auth)
    assert response.status_code == 202, response.json
    assert client.delete(f"/v1/batches/{response.json['id']}", headers=auth).status_code == 204
    assert api.storage.exists(key)  # it may be named again, by another batch


def test_a_storage_failure_deletes_no_record_and_the_same_request_finishes_it(
    app: Flask, client: FlaskClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = app.extensions["backdrop"]
    batch = _batch(client, auth, 2)
    ids = [job["id"] for job in batch["jobs"]]
    inputs = [api.jobs.get(job_id).input_key for job_id in ids]
    real = api.storage.delete_many

    def unavailable(keys: object) -> None:
        raise StorageError("the bucket went away")

    monkeypatch.setattr(api.storage, "delete_many", unavailable)
    response = client.delete(f"/v1/batches/{batch['id']}", headers=auth)
    assert (response.status_code, response.json["error"]["code"]) == (503, "storage_unavailable")
    # Nothing runs any more, and nothing is lost track of: the records and the batch are still there.
    assert [api.jobs.get(job_id).status for job_id in ids] == [JobStatus.CANCELED] * 2
    assert client.get(f"/v1/batches/{batch['id']}", headers=auth).status_code == 200
    assert all(api.storage.exists(key) for key in inputs)

    monkeypatch.setattr(api.storage, "delete_many", real)
    assert client.delete(f"/v1/batches/{batch['id']}", headers=auth).status_code == 204
    assert not any(api.storage.exists(key) for key in inputs) and api.jobs.get(ids[0]) is None
