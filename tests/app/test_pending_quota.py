"""The pending-jobs quota holds under concurrent submissions: the check and the record are one step."""

from __future__ import annotations

import io
import threading

from api.app import create_app
from common.settings import Settings
from tests.app.conftest import png

LIMIT = 5
CLIENTS = 12


def test_concurrent_submissions_never_pass_the_quota(settings: Settings, token: str) -> None:
    app = create_app(settings.model_copy(update={"max_pending_jobs": LIMIT}))
    statuses: list[int] = []
    barrier = threading.Barrier(CLIENTS)

    def submit(seed: int) -> None:
        client = app.test_client()
        data = {"image": (io.BytesIO(png(seed=seed)), "p.png")}
        barrier.wait(timeout=30)
        response = client.post(
            "/v1/jobs", data=data, headers={"Authorization": f"Bearer {token}"}, content_type="multipart/form-data"
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=submit, args=(seed,)) for seed in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [202] * LIMIT + [429] * (CLIENTS - LIMIT)
    api = app.extensions["backdrop"]
    assert api.jobs.pending_count(api.api_keys.authenticate(token).id) == LIMIT
    stored = [path for path in (settings.data_dir / "storage" / "objects").rglob("*") if path.is_file()]
    assert len(stored) == LIMIT  # a refused submission leaves no upload behind


def test_concurrent_batches_never_pass_the_quota(settings: Settings, token: str) -> None:
    """Two batches of 2 against a quota of 3, both past the early check before either writes a record:
    one is accepted, the other refused whole, with none of its jobs left queued."""
    app = create_app(settings.model_copy(update={"max_pending_jobs": 3}))
    api = app.extensions["backdrop"]
    create = api.batches.create
    barrier = threading.Barrier(2)

    def create_together(*args: object, **kwargs: object):  # after check_quota, before the records
        barrier.wait(timeout=30)
        return create(*args, **kwargs)

    api.batches.create = create_together
    statuses: list[int] = []

    def submit(index: int) -> None:
        urls = [f"https://127.0.0.1/{index}-{photo}.jpg" for photo in range(2)]
        response = app.test_client().post(
            "/v1/batches", json={"image_urls": urls}, headers={"Authorization": f"Bearer {token}"}
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=submit, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [202, 429]
    owner = api.api_keys.authenticate(token).id
    assert api.jobs.pending_count(owner) == 2
    queued = [key for key in api.redis.scan_iter("backdrop:job:*") if api.redis.hget(key, "status") == "queued"]
    assert len(queued) == 2  # the refused batch's records are gone, not left for the reconciler to enqueue
