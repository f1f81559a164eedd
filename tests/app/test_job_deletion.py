"""``DELETE /v1/jobs/{id}`` of a batch's job: its batch still completes, and tells its webhook once."""

from __future__ import annotations

import base64
import io
import json

import pytest
from flask import Flask
from flask.testing import FlaskClient
from kombu.exceptions import OperationalError

from api import submissions
from api.routes import jobs as job_routes
from common import keyspace
from common.queue import DELIVER_WEBHOOK, INTERACTIVE_QUEUE
from tests.app.conftest import png

HOOK = "https://example.invalid/hook"


def _batch(client: FlaskClient, auth: dict[str, str], count: int) -> dict:
    body = {"image_urls": [f"https://example.invalid/{index}.jpg" for index in range(count)], "options": {}}
    body["options"]["webhook_url"] = HOOK
    response = client.post("/v1/batches", json=body, headers=auth)
    assert response.status_code == 202, response.json
    return response.json


def _batch_events(app: Flask) -> list[str]:
    """The ids of the batches whose ``batch.completed`` delivery waits in the interactive queue."""
    found = []
    for raw in app.extensions["backdrop"].redis.lrange(INTERACTIVE_QUEUE, 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] != DELIVER_WEBHOOK:
            continue
        args = json.loads(base64.b64decode(message["body"]))[0]
        if args[1] == "batch.completed":
            found.append(args[0])
    return found


def broker_down(*args: object) -> None:
    """What kombu raises when the broker cannot be reached."""
    raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def _completed(app: Flask, batch_id: str) -> bool:
    return bool(app.extensions["backdrop"].redis.exists(keyspace.BATCH_COMPLETED.format(batch_id=batch_id)))


def test_deleting_the_last_pending_job_of_a_batch_completes_it(app: Flask, client: FlaskClient, auth: dict) -> None:
    batch = _batch(client, auth, 2)
    first, second = (job["id"] for job in batch["jobs"])
    assert client.post(f"/v1/jobs/{first}/cancel", headers=auth).status_code == 200
    assert not _completed(app, batch["id"]) and _batch_events(app) == []
    assert client.delete(f"/v1/jobs/{second}", headers=auth).status_code == 204
    assert _completed(app, batch["id"]) and _batch_events(app) == [batch["id"]]
    view = client.get(f"/v1/batches/{batch['id']}", headers=auth).json
    assert view["status"] == "completed" and view["counts"]["canceled"] == 2, view


def test_deleting_a_damaged_job_of_a_batch_lets_the_batch_complete(app: Flask, client: FlaskClient, auth: dict) -> None:
    batch = _batch(client, auth, 1)
    (job_id,) = (job["id"] for job in batch["jobs"])
    api = app.extensions["backdrop"]
    api.redis.hset(keyspace.JOB.format(job_id=job_id), "options", "{not json")
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 410
    assert client.delete(f"/v1/jobs/{job_id}", headers=auth).status_code == 204
    assert not api.redis.exists(keyspace.JOB.format(job_id=job_id))
    view = client.get(f"/v1/batches/{batch['id']}", headers=auth).json
    assert view["status"] == "completed" and view["counts"]["queued"] == 0, view
    assert view["counts"]["failed"] == 1 and _batch_events(app) == [batch["id"]]


def test_a_broker_outage_while_telling_the_batch_is_a_503(
    app: Flask, client: FlaskClient, auth: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's state has moved; the event cannot be sent: 503 (try again), not an unexpected 500."""

    monkeypatch.setattr(job_routes, "notify_batch_completed", broker_down)
    (job,) = _batch(client, auth, 1)["jobs"]
    response = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert (response.status_code, response.json["error"]["code"]) == (503, "queue_unavailable"), response.json


def test_a_job_whose_message_cannot_be_sent_leaves_no_photo(
    app: Flask, client: FlaskClient, auth: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """503: the record is deleted, and the photo and background with it (no record names them)."""

    monkeypatch.setattr(submissions, "send_job", broker_down)
    data = {"image": (io.BytesIO(png()), "p.png"), "background": "image"}
    data["background_image"] = (io.BytesIO(png(seed=1)), "b.png")
    response = client.post("/v1/jobs", data=data, headers=auth, content_type="multipart/form-data")
    assert (response.status_code, response.json["error"]["code"]) == (503, "queue_unavailable"), response.json
    api = app.extensions["backdrop"]
    assert api.redis.keys("backdrop:job:*") == []
    objects = api.settings.data_dir / "storage" / "objects"
    assert [path for path in objects.rglob("*") if path.is_file()] == []
