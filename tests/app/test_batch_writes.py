"""A batch's records are written a chunk at a time, then their messages sent: the order, the refused
photos and a broker that fails part-way, over a real Redis."""

from __future__ import annotations

import io
import threading

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from kombu.exceptions import OperationalError

from api import submissions
from common import keyspace
from common.queue import jobs_in_broker
from tests.app.conftest import png

CHUNK = 3


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submissions, "BATCH_WRITE_CHUNK", CHUNK)


def _broker(app: Flask) -> redis.Redis:
    return app.extensions["backdrop"].redis


def test_a_batch_of_several_chunks_keeps_its_order_and_queues_each_job_once(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    urls = [f"https://example.invalid/{index}.jpg" for index in range(2 * CHUNK + 2)]
    response = client.post("/v1/batches", json={"image_urls": urls}, headers=auth)
    assert response.status_code == 202, response.json
    batch = response.json
    api = app.extensions["backdrop"]
    jobs = api.batches.jobs_of(batch["id"])
    assert [job.image_url for job in jobs] == urls
    assert {job.status.value for job in jobs} == {"queued"}
    assert {job.batch_id for job in jobs} == {batch["id"]}
    assert api.batches.counts(batch["id"]).queued == len(urls)
    assert jobs_in_broker(_broker(app)) == {job.id for job in jobs}
    assert batch["counts"]["queued"] == len(urls)


def test_a_refused_photo_of_a_later_chunk_fails_alone(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    photos = [png(seed=index) for index in range(CHUNK + 2)]
    photos[CHUNK + 1] = photos[CHUNK + 1][:40]  # its header only: not a photo
    files = [(io.BytesIO(data), f"{index}.png") for index, data in enumerate(photos)]
    response = client.post("/v1/batches", data={"images": files}, headers=auth, content_type="multipart/form-data")
    assert response.status_code == 202, response.json
    api = app.extensions["backdrop"]
    jobs = api.batches.jobs_of(response.json["id"])
    assert [job.status.value for job in jobs] == ["queued"] * (CHUNK + 1) + ["failed"]
    assert jobs[-1].error is not None and jobs[-1].error.code == "unsupported_image"
    assert jobs_in_broker(_broker(app)) == {job.id for job in jobs[:-1]}


def test_a_broker_failing_part_way_leaves_no_job_queued_without_its_message(
    app: Flask, client: FlaskClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = submissions.send_job
    sent: list[str] = []

    def failing_after_four(celery: object, job_id: str, queue: str) -> None:
        if len(sent) == CHUNK + 1:
            raise OperationalError("the broker went away")
        real(celery, job_id, queue)  # type: ignore[arg-type]
        sent.append(job_id)

    monkeypatch.setattr(submissions, "send_job", failing_after_four)
    urls = [f"https://example.invalid/{index}.jpg" for index in range(3 * CHUNK)]
    response = client.post("/v1/batches", json={"image_urls": urls}, headers=auth)
    assert response.status_code == 503 and response.json["error"]["code"] == "queue_unavailable"
    api = app.extensions["backdrop"]
    # The jobs whose messages went out are queued; the rest of their chunk was deleted, and the chunk
    # after it never written.
    assert jobs_in_broker(_broker(app)) == set(sent)
    records = sorted(_broker(app).scan_iter(keyspace.JOB.format(job_id="*")))
    assert records == sorted(keyspace.JOB.format(job_id=job_id) for job_id in sent)
    assert all(api.jobs.get(job_id) is not None for job_id in sent)


def test_a_multipart_batch_stores_its_photos_several_at_a_time_each_under_its_own_job(
    app: Flask, client: FlaskClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = submissions.Upload.store
    together = threading.Barrier(CHUNK, timeout=30)  # broken (and the store fails) unless CHUNK wait at once

    def store(upload: submissions.Upload, api: object, key: str) -> None:
        together.wait()
        real(upload, api, key)  # type: ignore[arg-type]

    monkeypatch.setattr(submissions.Upload, "store", store)
    photos = [png(seed=index) for index in range(2 * CHUNK)]
    files = [(io.BytesIO(data), f"{index}.png") for index, data in enumerate(photos)]
    response = client.post("/v1/batches", data={"images": files}, headers=auth, content_type="multipart/form-data")
    assert response.status_code == 202, response.json
    api = app.extensions["backdrop"]
    jobs = api.batches.jobs_of(response.json["id"])
    assert [api.storage.get(job.input_key) for job in jobs] == photos
    assert {job.status.value for job in jobs} == {"queued"}
