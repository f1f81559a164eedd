"""A batch's zip is streamed as it is written: its first members leave before the later results are
read, and a result gone from storage is left out instead of failing the archive. Real Redis and local
storage, the API in-process."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import archives
from common.storage import result_key
from tests.conftest import batch_job, succeed_with_composite

Recorded = Callable[[object, str], list[tuple[object, ...]]]
JOBS = 3 * archives.READS_AHEAD


def _succeeded_batch(app: Flask, owner: str, count: int) -> tuple[str, list[str]]:
    api = app.extensions["backdrop"]
    batch = api.batches.create(owner, count + 1)
    ids = [batch_job(api.jobs, owner, batch.id) for _ in range(count + 1)]
    for index, job_id in enumerate(ids):
        if index != count // 2:  # one job still queued: no composite, no member
            succeed_with_composite(api.jobs, api.storage, job_id, f"composite {index}".encode() * 100)
    api.batches.add_jobs(batch, ids)
    return batch.id, ids


def _owner(app: Flask, auth: dict[str, str]) -> str:
    token = auth["Authorization"].removeprefix("Bearer ")
    return app.extensions["backdrop"].api_keys.authenticate(token).id


def test_the_zip_starts_before_the_later_results_are_read(
    app: Flask, client: FlaskClient, auth: dict[str, str], recorded: Recorded
) -> None:
    batch_id, ids = _succeeded_batch(app, _owner(app, auth), JOBS)
    reads = recorded(app.extensions["backdrop"].storage, "get")
    response = client.get(f"/v1/batches/{batch_id}/results.zip", headers=auth, buffered=False)
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{batch_id}.zip"'
    chunks = iter(response.response)
    first = next(chunks)
    assert first.startswith(b"PK")
    assert len(reads) <= 2 * archives.READS_AHEAD + 1 < JOBS  # the first member, and the reads ahead of it
    body = first + b"".join(chunks)
    response.close()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = archive.namelist()
        expected = [f"{index:05d}-{job_id}.jpg" for index, job_id in enumerate(ids) if index != JOBS // 2]
        assert names == expected
        assert archive.read(names[-1]) == f"composite {JOBS}".encode() * 100
        assert archive.testzip() is None
    assert len(reads) == JOBS


def test_the_first_member_waits_for_a_short_page_of_records_not_a_full_one(
    app: Flask, client: FlaskClient, auth: dict[str, str], recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archives, "RECORDS_PER_PAGE", JOBS)  # a batch bigger than two full pages
    batch_id, ids = _succeeded_batch(app, _owner(app, auth), 3 * JOBS)
    pages = recorded(app.extensions["backdrop"].batches, "jobs_of")
    response = client.get(f"/v1/batches/{batch_id}/results.zip", headers=auth, buffered=False)
    chunks = iter(response.response)
    first = next(chunks)
    # Before the first byte: one page, of just enough records to fill the reads ahead.
    assert [(start, stop) for _batch, start, stop in pages] == [(0, archives.FIRST_PAGE - 1)]
    assert archives.READS_AHEAD < archives.FIRST_PAGE < JOBS
    body = first + b"".join(chunks)
    response.close()
    starts = [start for _batch, start, _stop in pages]
    assert starts == [0, *range(archives.FIRST_PAGE, len(ids), JOBS)]
    assert all(stop - start + 1 == JOBS for _batch, start, stop in pages[1:])
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert len(archive.namelist()) == len(ids) - 1  # every succeeded job once, none twice
        assert archive.namelist()[-1] == f"{len(ids) - 1:05d}-{ids[-1]}.jpg"


def test_a_result_gone_from_storage_is_left_out(app: Flask, client: FlaskClient, auth: dict[str, str]) -> None:
    batch_id, ids = _succeeded_batch(app, _owner(app, auth), 4)
    app.extensions["backdrop"].storage.delete(result_key(ids[1], "composite.jpg"))
    response = client.get(f"/v1/batches/{batch_id}/results.zip", headers=auth)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        assert archive.namelist() == [f"{index:05d}-{ids[index]}.jpg" for index in (0, 3, 4)]
