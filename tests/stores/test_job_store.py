"""JobStore: records, transitions, the pending set and expiry, in a real Redis."""

from __future__ import annotations

import pytest
import redis

from common import keyspace
from common.jobs import JobStatus, JobStore, ResultInfo, TransitionRefused
from common.options import JobOptions
from tests.stores.conftest import TTL_SECONDS, new_job


def test_a_record_round_trips_with_its_options(jobs: JobStore, client: redis.Redis) -> None:
    job = new_job(jobs, batch_id="b1", image_url=None, background_image_key="backgrounds/x")
    stored = jobs.get(job.id)
    assert stored == job
    assert stored.options == JobOptions(background="red") and stored.background_image_key == "backgrounds/x"
    assert 0 < client.ttl(keyspace.JOB.format(job_id=job.id)) <= TTL_SECONDS
    assert jobs.get("0" * 32) is None


def test_transitions_follow_the_state_machine(jobs: JobStore) -> None:
    job = new_job(jobs)
    assert jobs.start(job.id) and jobs.start(job.id)  # a redelivery counts another attempt
    assert jobs.get(job.id).attempts == 2 and jobs.get(job.id).status is JobStatus.PROCESSING
    result = ResultInfo(
        key="results/x/composite.jpg", format="jpeg", media_type="image/jpeg", bytes=3, width=4, height=3
    )
    assert jobs.succeed(job.id, {"composite": result}, pass_id="p", pass_size=2)
    done = jobs.get(job.id)
    assert done.status is JobStatus.SUCCEEDED and done.results["composite"] == result and done.pass_size == 2
    with pytest.raises(TransitionRefused) as refused:
        jobs.cancel(job.id)
    assert refused.value.current is JobStatus.SUCCEEDED and refused.value.target is JobStatus.CANCELED
    assert not jobs.start("f" * 32)  # no record: nothing to move


def test_failing_records_the_error(jobs: JobStore) -> None:
    job = new_job(jobs)
    assert jobs.fail(job.id, "corrupt_image", "truncated")
    failed = jobs.get(job.id)
    assert failed.status is JobStatus.FAILED and (failed.error.code, failed.error.message) == (
        "corrupt_image",
        "truncated",
    )
    assert failed.finished_at is not None


def test_the_pending_set_counts_unfinished_jobs_per_owner(jobs: JobStore, client: redis.Redis) -> None:
    first, second, other = new_job(jobs), new_job(jobs), new_job(jobs, owner="owner-b")
    assert jobs.pending_count("owner-a") == 2 and jobs.pending_count("owner-b") == 1
    jobs.cancel(first.id)
    assert jobs.pending_count("owner-a") == 1
    client.delete(keyspace.JOB.format(job_id=second.id))  # expired: dropped from the count
    assert jobs.pending_count("owner-a") == 0
    jobs.delete(other)
    assert jobs.pending_count("owner-b") == 0 and jobs.get(other.id) is None
