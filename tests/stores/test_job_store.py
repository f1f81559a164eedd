"""JobStore: records, transitions, the pending set and expiry, in a real Redis."""

from __future__ import annotations

import pytest
import redis

from common import keyspace
from common.batches import BatchStore
from common.jobs import InputInfo, JobExists, JobStatus, JobStore, ResultInfo, TransitionRefused, new_job_id
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


def index_score(client: redis.Redis, job_id: str) -> float | None:
    return client.zscore(keyspace.PENDING_SINCE, job_id)


def test_creating_is_atomic_and_indexes_the_pending_job(jobs: JobStore, client: redis.Redis) -> None:
    job = new_job(jobs)
    assert index_score(client, job.id) is not None
    with pytest.raises(JobExists):
        jobs.create(job.id, "inputs/other", job.input, JobOptions(), owner="owner-b")
    assert jobs.get(job.id) == job  # the first record is untouched
    assert jobs.pending_count("owner-b") == 0


def test_the_index_follows_the_state_machine(jobs: JobStore, client: redis.Redis) -> None:
    job, canceled, deleted = new_job(jobs), new_job(jobs), new_job(jobs)
    client.zadd(keyspace.PENDING_SINCE, {job.id: 1.0})
    assert jobs.start(job.id)
    assert index_score(client, job.id) > 1.0  # starting is a sign of life
    assert jobs.stale(2.0, 10) == []
    result = ResultInfo(key="results/x/c.jpg", format="jpeg", media_type="image/jpeg", bytes=3, width=4, height=3)
    jobs.succeed(job.id, {"composite": result})
    jobs.cancel(canceled.id)
    jobs.delete(deleted)
    assert client.zcard(keyspace.PENDING_SINCE) == 0


def test_deliveries_are_counted_up_to_the_limit(jobs: JobStore) -> None:
    job = new_job(jobs)
    assert [jobs.add_delivery(job.id, 2, delivery) for delivery in ("d1", "d1", "d2", "d3")] == [True] * 3 + [False]
    assert jobs.get(job.id).deliveries == 2  # d1, run twice within its delivery, counted once
    assert jobs.add_delivery(job.id, 2, "d2")  # the last one counted, run again
    assert jobs.add_delivery("f" * 32, 2, "d1") is None


def test_stale_lists_the_oldest_untouched_jobs(jobs: JobStore, client: redis.Redis) -> None:
    old, older, fresh = new_job(jobs), new_job(jobs), new_job(jobs)
    client.zadd(keyspace.PENDING_SINCE, {old.id: 20.0, older.id: 10.0})
    assert jobs.stale(100.0, 10) == [(older.id, 10.0), (old.id, 20.0)]
    assert jobs.stale(100.0, 1) == [(older.id, 10.0)]
    jobs.seen([older.id, "f" * 32])
    assert jobs.stale(100.0, 10) == [(old.id, 20.0)]
    assert index_score(client, "f" * 32) is None  # a sign of life never adds a job
    assert fresh.id not in dict(jobs.stale(100.0, 10))


def test_reclaiming_claims_once_and_counts_a_lost_delivery_of_a_queued_job(jobs: JobStore, client: redis.Redis) -> None:
    queued, running = new_job(jobs), new_job(jobs)
    jobs.add_delivery(running.id, 3, "d1")
    jobs.start(running.id)
    client.zadd(keyspace.PENDING_SINCE, {queued.id: 5.0, running.id: 6.0})
    assert jobs.reclaim(queued.id, 5.0, 3) == "requeue"
    assert jobs.reclaim(queued.id, 5.0, 3) == "busy"  # already claimed: its score moved on
    assert jobs.get(queued.id).deliveries == 1  # the lost message never started: counted here
    assert jobs.reclaim(running.id, 6.0, 3) == "requeue"
    assert jobs.get(running.id).deliveries == 1  # its delivery was counted when it started


def test_reclaiming_a_job_out_of_deliveries_or_finished(jobs: JobStore, client: redis.Redis) -> None:
    spent, finished = new_job(jobs), new_job(jobs)
    jobs.add_delivery(spent.id, 2, "d1")
    client.zadd(keyspace.PENDING_SINCE, {spent.id: 5.0, finished.id: 5.0})
    assert jobs.reclaim(spent.id, 5.0, 2) == "exhausted"  # the lost one was its second delivery
    client.hset(keyspace.JOB.format(job_id=finished.id), "status", "succeeded")
    assert jobs.reclaim(finished.id, 5.0, 2) == "gone"
    assert jobs.reclaim("f" * 32, 5.0, 2) == "gone"
    assert index_score(client, finished.id) is None


def test_jobs_of_the_pending_sets_join_the_index(jobs: JobStore, client: redis.Redis) -> None:
    first, second = new_job(jobs), new_job(jobs, owner="owner-b")
    client.delete(keyspace.PENDING_SINCE)  # records written before the index existed
    assert jobs.index_pending_sets() == 2
    assert {job_id for job_id, _ in jobs.stale(float("inf"), 10)} == {first.id, second.id}
    assert jobs.index_pending_sets() == 0


def test_records_written_together_are_each_what_one_write_makes(jobs: JobStore, batches: BatchStore) -> None:
    batch = batches.create("owner-a", 3)
    info = InputInfo(bytes=10, format="PNG", width=4, height=3)
    records = [
        jobs.new(new_job_id(), f"inputs/{n}", info, JobOptions(background="blue"), owner="owner-a", batch_id=batch.id)
        for n in range(3)
    ]
    assert all(jobs.get(record.id) is None for record in records)  # new() writes nothing
    jobs.insert_many(records)
    assert [jobs.get(record.id) for record in records] == records
    assert jobs.pending_count("owner-a") == 3
    assert batches.counts(batch.id).queued == 3  # each counted in its batch's tally, as one create does
    again = jobs.new(new_job_id(), "inputs/x", info, JobOptions(), owner="owner-a")
    with pytest.raises(JobExists) as taken:
        jobs.insert_many([again, records[1]])
    assert records[1].id in str(taken.value) and again.id not in str(taken.value)
    assert jobs.get(again.id) == again  # the free id was written
    assert jobs.get(records[1].id) == records[1]  # the taken one left as it was
