"""A batch request that fails part-way leaves nothing of its batch to run, and ``Idempotency-Key`` makes
``POST /v1/batches`` safe to retry: a replay, a request still writing, and one that died part-way,
over a real Redis."""

from __future__ import annotations

import io
import itertools
import time

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from kombu.exceptions import OperationalError

from api import submissions
from common import keyspace
from common.batches import BATCH_WRITE_LEASE_SECONDS
from common.errors import StorageError
from common.jobs import JobStatus
from common.queue import jobs_in_broker, send_job
from tests.app.conftest import png
from worker.notifications import JobEvents
from worker.reconciler import Reconciler

CHUNK = 3
URLS = [f"https://example.invalid/{index}.jpg" for index in range(3 * CHUNK)]


class Crash(BaseException):
    """The API process dying where it stands: no handler of the application runs, nothing is undone."""


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submissions, "BATCH_WRITE_CHUNK", CHUNK)


def _redis(app: Flask) -> redis.Redis:
    return app.extensions["backdrop"].redis


def _post(client: FlaskClient, auth: dict[str, str], key: str | None, urls: list[str] = URLS):
    headers = {**auth, "Idempotency-Key": key} if key else auth
    return client.post("/v1/batches", json={"image_urls": urls}, headers=headers)


def _sends_then(monkeypatch: pytest.MonkeyPatch, count: int, failure: BaseException) -> list[str]:
    """send_job works ``count`` times, then raises ``failure``; the ids sent."""
    real = submissions.send_job
    sent: list[str] = []

    def send(celery: object, job_id: str, queue: str) -> None:
        if len(sent) == count:
            raise failure
        real(celery, job_id, queue)  # type: ignore[arg-type]
        sent.append(job_id)

    monkeypatch.setattr(submissions, "send_job", send)
    return sent


def _batch_records(app: Flask) -> list[str]:
    prefix = keyspace.BATCH.format(batch_id="")
    return [name for name in _redis(app).scan_iter(prefix + "*") if ":" not in name[len(prefix) :]]


def _lease_runs_out(app: Flask, owner: str, key: str) -> None:
    """What WRITER_LEASE_SECONDS without a sign of life from a dead request comes to."""
    assert _redis(app).pexpire(keyspace.IDEMPOTENCY_WRITER.format(owner=owner, key=key), 1)


def _statuses(app: Flask, job_ids: list[str]) -> list[str]:
    return [app.extensions["backdrop"].jobs.get(job_id).status.value for job_id in job_ids]


def _owner(app: Flask, job_id: str) -> str:
    return app.extensions["backdrop"].jobs.get(job_id).owner


def _until_not_in_use(client: FlaskClient, auth: dict[str, str], key: str):
    """The first answer that is not 409 (bounded: 50 tries, 0.1 s apart)."""
    for _ in range(50):
        response = _post(client, auth, key)
        if response.status_code != 409:
            return response
        time.sleep(0.1)
    raise AssertionError("the key stayed in use")


def test_a_batch_failing_part_way_leaves_none_of_its_jobs_to_run(
    app: Flask, client: FlaskClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _sends_then(monkeypatch, CHUNK + 1, OperationalError("the broker went away"))
    response = _post(client, auth, None)
    assert response.status_code == 503 and response.json["error"]["code"] == "queue_unavailable"
    # The client never learned the batch's id: the jobs whose messages went out are canceled (their
    # worker skips them), the batch record is gone (no webhook, no counts), and no quota is held.
    assert len(sent) == CHUNK + 1
    assert _statuses(app, sent) == ["canceled"] * len(sent)
    assert _batch_records(app) == []
    assert app.extensions["backdrop"].jobs.pending_count(_owner(app, sent[0])) == 0


def test_a_storage_failure_part_way_also_withdraws_the_batch(
    app: Flask, client: FlaskClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = submissions.Upload.store
    calls = itertools.count()  # photos are stored several at a time: count the calls atomically

    def store(upload: submissions.Upload, api: object, key: str) -> None:
        if next(calls) == CHUNK + 1:  # the second photo of the second chunk
            raise StorageError("the bucket went away")
        real(upload, api, key)  # type: ignore[arg-type]

    monkeypatch.setattr(submissions.Upload, "store", store)
    files = [(io.BytesIO(png(seed=index)), f"{index}.png") for index in range(2 * CHUNK)]
    response = client.post("/v1/batches", data={"images": files}, headers=auth, content_type="multipart/form-data")
    assert response.status_code == 503 and response.json["error"]["code"] == "storage_unavailable"
    first_chunk = [name for name in _redis(app).scan_iter(keyspace.JOB.format(job_id="*"))]
    assert len(first_chunk) == CHUNK
    assert {_redis(app).hget(name, "status") for name in first_chunk} == {"canceled"}
    assert _batch_records(app) == []
    # The photos it had stored are deleted with it, not left for the retention sweep.
    photos = [_redis(app).hget(name, "input_key") for name in first_chunk]
    assert len(set(photos)) == CHUNK and not any(app.extensions["backdrop"].storage.exists(key) for key in photos)


def test_the_same_key_and_body_replay_the_batch_and_another_body_is_refused(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    first = _post(client, auth, "batch-1")
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    queued = jobs_in_broker(_redis(app))
    again = _post(client, auth, "batch-1")
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json["id"] == first.json["id"] and again.headers["Location"] == first.headers["Location"]
    assert jobs_in_broker(_redis(app)) == queued and len(queued) == len(URLS)  # no second job
    changed = _post(client, auth, "batch-1", URLS[:-1])
    assert (changed.status_code, changed.json["error"]["code"]) == (422, "idempotency_key_reused")
    assert _post(client, auth, "batch-2").json["id"] != first.json["id"]
    # A key is one request's: the key of a single job cannot also name a batch.
    job = client.post(
        "/v1/jobs",
        data={"image_url": URLS[0]},
        headers={**auth, "Idempotency-Key": "job-1"},
        content_type="multipart/form-data",
    )
    assert job.status_code == 202, job.json
    reused = _post(client, auth, "job-1")
    assert (reused.status_code, reused.json["error"]["code"]) == (422, "idempotency_key_reused")


def test_a_key_and_the_same_key_with_a_writer_suffix_are_two_keys(client: FlaskClient, auth: dict[str, str]) -> None:
    """A job's key "k:writer" and a batch's key "k": one is not the other's hold on its batch."""
    data = {"image": (io.BytesIO(png()), "p.png")}
    headers = {**auth, "Idempotency-Key": "k:writer"}
    job = client.post("/v1/jobs", data=data, headers=headers, content_type="multipart/form-data")
    assert job.status_code == 202, job.json
    batch = _post(client, auth, "k")
    assert batch.status_code == 202, batch.json
    assert _post(client, auth, "k").headers.get("Idempotent-Replayed") == "true"


def test_a_key_is_per_api_key(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    other = {"X-Api-Key": app.extensions["backdrop"].api_keys.create("other").token}
    mine, theirs = _post(client, auth, "batch-1"), _post(client, other, "batch-1")
    assert mine.status_code == theirs.status_code == 202
    assert mine.json["id"] != theirs.json["id"] and "Idempotent-Replayed" not in theirs.headers


def test_a_request_that_died_part_way_holds_its_key_then_a_retry_writes_the_batch_afresh(
    app: Flask, client: FlaskClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _sends_then(monkeypatch, CHUNK + 1, Crash())
    with pytest.raises(Crash):
        _post(client, auth, "batch-1")
    monkeypatch.setattr(submissions, "send_job", send_job)  # the broker works again
    (dead_batch,) = _batch_records(app)

    busy = _post(client, auth, "batch-1")  # within the dead request's lease: it may still be writing
    assert (busy.status_code, busy.json["error"]["code"]) == (409, "idempotency_key_in_use")
    assert busy.headers["Retry-After"] == "5"

    _lease_runs_out(app, _owner(app, sent[0]), "batch-1")
    retried = _until_not_in_use(client, auth, "batch-1")
    assert retried.status_code == 202, retried.json
    assert "Idempotent-Replayed" not in retried.headers
    batch_id = retried.json["id"]
    assert keyspace.BATCH.format(batch_id=batch_id) != dead_batch
    # What the dead request wrote is withdrawn; the new batch has every photo, each queued once.
    assert _batch_records(app) == [keyspace.BATCH.format(batch_id=batch_id)]
    assert _statuses(app, sent) == ["canceled"] * len(sent)
    jobs = app.extensions["backdrop"].batches.jobs_of(batch_id)
    assert [job.image_url for job in jobs] == URLS and {job.status for job in jobs} == {JobStatus.QUEUED}
    assert jobs_in_broker(_redis(app)) == {job.id for job in jobs} | set(sent)  # the canceled ones are skipped
    assert app.extensions["backdrop"].jobs.pending_count(jobs[0].owner) == len(URLS)
    replay = _post(client, auth, "batch-1")
    assert replay.json["id"] == batch_id and replay.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("crash_at", ["confirm_batch", "_send"])
def test_a_request_that_died_after_writing_its_whole_batch_is_replayed(
    app: Flask, client: FlaskClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch, crash_at: str
) -> None:
    """Dying before its reservation is confirmed, or before the last chunk's messages (which the
    reconciler then sends): either way every record is written, and the retry answers that batch."""
    real = getattr(submissions, crash_at)
    chunks = iter(range(len(URLS) // CHUNK))

    def crash(*args: object, **kwargs: object) -> None:
        if crash_at == "_send" and next(chunks) < len(URLS) // CHUNK - 1:
            return real(*args, **kwargs)
        raise Crash()

    monkeypatch.setattr(submissions, crash_at, crash)
    with pytest.raises(Crash):
        _post(client, auth, "batch-1")
    monkeypatch.setattr(submissions, crash_at, real)
    (written,) = _batch_records(app)
    queued = jobs_in_broker(_redis(app))
    assert len(queued) == (len(URLS) if crash_at == "confirm_batch" else len(URLS) - CHUNK)
    busy = _post(client, auth, "batch-1")
    assert (busy.status_code, busy.json["error"]["code"]) == (409, "idempotency_key_in_use")
    _lease_runs_out(app, _owner(app, next(iter(queued))), "batch-1")

    retried = _until_not_in_use(client, auth, "batch-1")
    assert retried.status_code == 202 and retried.headers["Idempotent-Replayed"] == "true"
    assert keyspace.BATCH.format(batch_id=retried.json["id"]) == written
    assert jobs_in_broker(_redis(app)) == queued
    assert {job["status"] for job in retried.json["jobs"]} == {"queued"}
    # Answered, it is no batch being written any more: the reconciler leaves it alone.
    assert _reconciler(app).run_once(time.time() + BATCH_WRITE_LEASE_SECONDS + 1).withdrawn == []
    assert _batch_records(app) == [written]


def _reconciler(app: Flask) -> Reconciler:
    api = app.extensions["backdrop"]
    events = JobEvents(None, api.jobs, api.batches)
    return Reconciler(api.redis, api.jobs, events, api.storage, api.celery, api.settings, recheck_delay=0)


def test_the_reconciler_withdraws_a_batch_whose_request_died_part_way(
    app: Flask, client: FlaskClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _sends_then(monkeypatch, CHUNK + 1, Crash())
    with pytest.raises(Crash):
        _post(client, auth, None)  # no key: no retry will come for it
    (record,) = _batch_records(app)
    unsent = [name for name in _redis(app).scan_iter(keyspace.JOB.format(job_id="*"))]
    assert len(unsent) == 2 * CHUNK  # the second chunk's records, two of them without a message
    storage = app.extensions["backdrop"].storage
    fetched = [_redis(app).hget(name, "input_key") for name in unsent]
    for key in fetched:  # as a worker stores a photo it fetched from its URL
        storage.put(key, b"photo", "image/jpeg")
    reconciler = _reconciler(app)
    assert reconciler.run_once(time.time()).withdrawn == []  # its request may still be writing it
    report = reconciler.run_once(time.time() + BATCH_WRITE_LEASE_SECONDS + 1)
    assert [keyspace.BATCH.format(batch_id=batch_id) for batch_id in report.withdrawn] == [record]
    assert report.requeued == [] and _batch_records(app) == []
    assert {_redis(app).hget(name, "status") for name in unsent} == {"canceled"}
    assert app.extensions["backdrop"].jobs.pending_count(_owner(app, sent[0])) == 0
    assert not any(storage.exists(key) for key in fetched)


def test_a_request_taken_for_dead_while_writing_fails_and_leaves_nothing_to_run(
    app: Flask, client: FlaskClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = submissions.send_job
    sent: list[str] = []

    def send_then_stall(celery: object, job_id: str, queue: str) -> None:
        real(celery, job_id, queue)  # type: ignore[arg-type]
        sent.append(job_id)
        if len(sent) == CHUNK:  # the first chunk is out; then the request stalls past its lease
            assert _reconciler(app).run_once(time.time() + BATCH_WRITE_LEASE_SECONDS + 1).withdrawn

    monkeypatch.setattr(submissions, "send_job", send_then_stall)
    response = _post(client, auth, None)
    assert (response.status_code, response.json["error"]["code"]) == (503, "queue_unavailable")
    assert len(sent) == CHUNK and _statuses(app, sent) == ["canceled"] * CHUNK
    assert _batch_records(app) == []


def test_a_different_photo_refused_for_the_same_reason_is_another_body(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    def post(junk: bytes):
        files = [(io.BytesIO(png(seed=1)), "a.png"), (io.BytesIO(junk), "b.png")]
        headers = {**auth, "Idempotency-Key": "refused-photo"}
        return client.post("/v1/batches", data={"images": files}, headers=headers, content_type="multipart/form-data")

    first = post(b"not an image: one")
    assert first.status_code == 202
    again = post(b"not an image: one")
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    # Same length, same refusal, other bytes: not the body the key was first used with.
    other = post(b"not an image: two")
    assert (other.status_code, other.json["error"]["code"]) == (422, "idempotency_key_reused")


def test_a_key_longer_than_the_limit_is_refused_not_cut(client: FlaskClient, auth: dict[str, str]) -> None:
    """Cut to 200 characters, two keys alike in their first 200 would be one key: the second a replay."""
    first = _post(client, auth, "k" * 200 + "-first")
    assert (first.status_code, first.json["error"]["code"]) == (400, "invalid_input"), first.json
    assert "200" in first.json["error"]["message"]
    assert _post(client, auth, "k" * 200).status_code == 202
