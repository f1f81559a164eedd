"""Keys, limits and the job lifecycle, against the real stack (Redis, Celery worker, storage, HTTP)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from common.api_keys import ApiKeyStore
from tests.integration.stack import Stack
from tests.integration.test_service import rgba_photo
from worker.embedded import wait_until


@pytest.fixture(scope="module")
def idle_stack(stack_factory: Callable[..., Stack]) -> Stack:
    """An API whose jobs stay queued until a test starts a worker."""
    stack = stack_factory("local", BACKDROP_MAX_PENDING_JOBS="4")
    stack.start_api()
    return stack


def test_requests_need_a_valid_key(idle_stack: Stack) -> None:
    missing = idle_stack.submit(rgba_photo(1), token=None)
    assert missing.status == 401 and missing.json()["error"]["code"] == "unauthorized"
    assert idle_stack.submit(rgba_photo(1), token="bd_nothing_here").status == 401
    key = ApiKeyStore(idle_stack.redis).create("soon revoked")
    assert idle_stack.poll("0" * 32, token=key.token).status == 404  # authenticated: an unknown job
    ApiKeyStore(idle_stack.redis).revoke(key.key.id)
    assert idle_stack.poll("0" * 32, token=key.token).status == 401
    via_header = idle_stack.request("GET", "/v1/jobs/" + "0" * 32, headers={"X-Api-Key": idle_stack.token}, token=None)
    assert via_header.status == 404


def test_a_key_never_sees_another_keys_jobs(idle_stack: Stack) -> None:
    other = idle_stack.new_key("other tenant")
    job_id = idle_stack.submit(rgba_photo(2)).json()["id"]
    for response in (
        idle_stack.poll(job_id, token=other),
        idle_stack.request("POST", f"/v1/jobs/{job_id}/cancel", token=other),
        idle_stack.request("DELETE", f"/v1/jobs/{job_id}", token=other),
    ):
        assert response.status == 404 and response.json()["error"]["code"] == "not_found"
    assert idle_stack.poll(job_id).json()["status"] == "queued"  # untouched by the other key
    idle_stack.request("DELETE", f"/v1/jobs/{job_id}")


def test_idempotent_replay(idle_stack: Stack) -> None:
    headers = {"Idempotency-Key": "order-1234"}
    first = idle_stack.submit(rgba_photo(3), headers=headers, background="red")
    again = idle_stack.submit(rgba_photo(3), headers=headers, background="red")
    assert first.status == 202 and again.status == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    changed = idle_stack.submit(rgba_photo(3), headers=headers, background="blue")
    assert changed.status == 422 and changed.json()["error"]["code"] == "idempotency_key_reused"
    other_key = idle_stack.submit(rgba_photo(3), headers=headers, background="red", token=idle_stack.new_key())
    assert other_key.json()["id"] != first.json()["id"]  # keys are scoped to their API key
    for job_id in (first.json()["id"], other_key.json()["id"]):
        idle_stack.request("DELETE", f"/v1/jobs/{job_id}")


def test_pending_quota(idle_stack: Stack) -> None:
    token = idle_stack.new_key("quota")
    ids = [idle_stack.submit(rgba_photo(4), token=token).json()["id"] for _ in range(4)]
    refused = idle_stack.submit(rgba_photo(4), token=token)
    assert refused.status == 429
    assert refused.json()["error"]["code"] == "too_many_pending_jobs"
    assert int(refused.headers["retry-after"]) > 0
    idle_stack.request("POST", f"/v1/jobs/{ids[0]}/cancel", token=token)
    assert idle_stack.submit(rgba_photo(4), token=token).status == 202  # a slot came free


def test_cancel_a_queued_job_and_it_never_runs(idle_stack: Stack) -> None:
    canceled = idle_stack.submit(rgba_photo(5)).json()["id"]
    kept = idle_stack.submit(rgba_photo(6)).json()["id"]
    response = idle_stack.request("POST", f"/v1/jobs/{canceled}/cancel")
    assert response.status == 200 and response.json()["status"] == "canceled"
    idle_stack.start_worker()
    assert idle_stack.wait_for(kept)["status"] == "succeeded"
    job = idle_stack.poll(canceled).json()
    assert job["status"] == "canceled" and job["attempts"] == 0 and job["results"] is None
    again = idle_stack.request("POST", f"/v1/jobs/{canceled}/cancel")
    assert again.json()["status"] == "canceled"


def test_prefer_wait_answers_in_one_round_trip(idle_stack: Stack) -> None:
    if not idle_stack.workers:
        idle_stack.start_worker()
    response = idle_stack.submit(rgba_photo(7), headers={"Prefer": "wait=30"})
    assert response.status == 200
    assert response.json()["status"] == "succeeded" and response.json()["results"]["composite"]["url"]
    assert response.headers["preference-applied"] == "wait=30"


def test_delete_removes_results_and_record(idle_stack: Stack) -> None:
    if not idle_stack.workers:
        idle_stack.start_worker()
    done = idle_stack.wait_for(idle_stack.submit(rgba_photo(8)).json()["id"])
    url = done["results"]["composite"]["url"]
    assert idle_stack.download(url).status == 200
    assert idle_stack.request("DELETE", f"/v1/jobs/{done['id']}").status == 204
    assert idle_stack.poll(done["id"]).status == 404
    assert idle_stack.download(url).status == 404
    objects = idle_stack.settings.data_dir / "storage" / "objects"
    assert not list(objects.rglob(f"*{done['id']}*"))


def test_rate_limit(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("local", BACKDROP_RATE_LIMIT="5/minute")
    stack.start_api()
    statuses = [stack.poll("0" * 32) for _ in range(6)]
    assert [r.status for r in statuses[:5]] == [404] * 5
    limited = statuses[5]
    assert limited.status == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) > 0
    assert limited.headers["ratelimit-limit"] == "5" and limited.headers["ratelimit-remaining"] == "0"
    assert statuses[0].headers["ratelimit-remaining"] == "4"
    assert 0 <= int(limited.headers["ratelimit-reset"]) <= 61  # seconds (rounded up) until a request is free
    assert stack.poll("0" * 32, token=stack.new_key()).status == 404  # per key, not global


def test_waits_of_one_key_leave_the_api_answering(stack_factory: Callable[..., Stack]) -> None:
    """As many 'Prefer: wait' POSTs from one key as the API has threads (16): past the caps they are
    answered at once, and a health check is answered while the held ones still wait."""
    # No worker: a held wait lasts all of its 5 s. The per-key cap at 2, below its default.
    stack = stack_factory("local", BACKDROP_MAX_WAITING_PER_KEY="2")
    stack.start_api()
    events: list[str] = []

    def submit(seed: int) -> None:
        answer = stack.submit(rgba_photo(seed), headers={"Prefer": "wait=5"})
        events.append("held" if "preference-applied" in answer.headers else f"at once {answer.status}")

    threads = [threading.Thread(target=submit, args=(seed,)) for seed in range(16)]
    for thread in threads:
        thread.start()
    for _ in range(40):  # at most 4 s, within the waits
        if sum(event.startswith("at once") for event in events) >= 14:
            break
        time.sleep(0.1)
    health = stack.request("GET", "/healthz", token=None)
    events.append(f"healthz {health.status}")
    for thread in threads:
        thread.join(timeout=60)
    assert len(events) == 17
    assert events.count("held") <= 2 and events.count("at once 202") >= 14
    assert "healthz 200" in events
    assert "held" not in events[: events.index("healthz 200")]  # answered while the held ones waited


def test_results_and_records_expire(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("local", BACKDROP_JOB_TTL_SECONDS="4", BACKDROP_CLEANUP_INTERVAL_SECONDS="1")
    stack.start_worker()
    stack.start_api()
    done = stack.wait_for(stack.submit(rgba_photo(9)).json()["id"])
    created = done["created_at"]
    assert done["expires_at"] > created
    objects: Path = stack.settings.data_dir / "storage" / "objects"
    assert list(objects.rglob(f"*{done['id']}*"))
    wait_until(lambda: stack.poll(done["id"]).status == 404, 30, "the record to expire")
    wait_until(lambda: not list(objects.rglob(f"*{done['id']}*")), 30, "the workers' cleanup")


def test_cors_for_listed_origins_only(stack_factory: Callable[..., Stack], idle_stack: Stack) -> None:
    stack = stack_factory("local", BACKDROP_CORS_ORIGINS="https://app.example, https://booth.example")
    stack.start_api()
    preflight = stack.request(
        "OPTIONS",
        "/v1/jobs",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, idempotency-key, prefer",
        },
        token=None,
    )
    assert preflight.status == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "idempotency-key" in preflight.headers["access-control-allow-headers"].lower()

    polled = stack.poll("0" * 32, token=stack.token)
    assert "access-control-allow-origin" not in polled.headers  # no Origin, no CORS headers
    cross = stack.request("GET", "/v1/jobs/" + "0" * 32, headers={"Origin": "https://booth.example"})
    assert cross.status == 404 and cross.headers["access-control-allow-origin"] == "https://booth.example"
    assert "retry-after" in cross.headers["access-control-expose-headers"].lower()
    stranger = stack.request("GET", "/v1/jobs/" + "0" * 32, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in stranger.headers
    default = idle_stack.request("GET", "/v1/jobs/" + "0" * 32, headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in default.headers  # nothing is allowed unless configured
