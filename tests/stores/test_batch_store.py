"""BatchStore: records, job lists in order, counts and the once-only completion claim, in a real Redis."""

from __future__ import annotations

import pytest

from common import keyspace
from common.batches import BatchCounts, BatchStore
from common.jobs import JobStore, TransitionRefused
from tests.stores.conftest import new_job


def test_a_batch_lists_its_jobs_in_submission_order(batches: BatchStore, jobs: JobStore) -> None:
    batch = batches.create("owner-a", 3, "https://example.invalid/hook")
    members = [new_job(jobs, batch_id=batch.id) for _ in range(3)]
    for job in members:
        batches.add_job(batch, job.id)
    assert batches.get(batch.id) == batch
    assert batches.job_ids(batch.id) == [job.id for job in members]
    assert [job.id for job in batches.jobs_of(batch.id, 1, 2)] == [members[1].id, members[2].id]
    assert batches.get("nope") is None


def test_counts_and_completion_are_claimed_once(batches: BatchStore, jobs: JobStore) -> None:
    batch = batches.create("owner-a", 2)
    first, second = new_job(jobs, batch_id=batch.id), new_job(jobs, batch_id=batch.id)
    batches.add_job(batch, first.id)
    batches.add_job(batch, second.id)
    assert batches.counts(batch.id) == BatchCounts(queued=2)
    jobs.fail(first.id, "corrupt_image", "bad")
    assert batches.counts(batch.id).finished == 1 and not batches.finished(batch)
    assert batches.claim_completion(batch.id) is None
    jobs.start(second.id)
    jobs.cancel(second.id)
    assert batches.counts(batch.id) == BatchCounts(failed=1, canceled=1)
    assert batches.finished(batch)
    assert batches.claim_completion(batch.id) == batch
    assert batches.claim_completion(batch.id) is None  # only the first caller gets it


def tally(batches: BatchStore, batch_id: str) -> str | None:
    return batches.redis.hget(keyspace.BATCH.format(batch_id=batch_id), keyspace.BATCH_FINISHED)


def test_completion_is_read_from_the_tally_the_transitions_keep(
    batches: BatchStore, jobs: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = batches.create("owner-a", 3)
    members = [new_job(jobs, batch_id=batch.id) for _ in range(3)]
    for job in members:
        batches.add_job(batch, job.id)
    jobs.start(members[0].id)
    jobs.start(members[0].id)  # a retry: still processing, not finished
    jobs.succeed(members[0].id, {})
    jobs.fail(members[1].id, "corrupt_image", "bad")
    with pytest.raises(TransitionRefused):
        jobs.cancel(members[1].id)  # already final: refused, and not counted again
    assert tally(batches, batch.id) == "2"
    jobs.cancel(members[2].id)
    assert tally(batches, batch.id) == "3"

    def scanned(*args: object) -> object:
        raise AssertionError("the completion check read every job")

    monkeypatch.setattr(batches, "counts", scanned)
    monkeypatch.setattr(batches, "job_ids", scanned)
    assert batches.claim_completion(batch.id) == batch


def test_a_job_outliving_its_batch_record_does_not_bring_the_record_back(batches: BatchStore, jobs: JobStore) -> None:
    batch = batches.create("owner-a", 1)
    job = new_job(jobs, batch_id=batch.id)
    batches.add_job(batch, job.id)
    batches.redis.delete(keyspace.BATCH.format(batch_id=batch.id))  # as when the batch record expired
    jobs.fail(job.id, "corrupt_image", "bad")
    assert batches.redis.exists(keyspace.BATCH.format(batch_id=batch.id)) == 0


def test_a_batch_recorded_before_tallies_existed_is_counted_job_by_job(batches: BatchStore, jobs: JobStore) -> None:
    batch = batches.create("owner-a", 2)
    batches.redis.hdel(keyspace.BATCH.format(batch_id=batch.id), keyspace.BATCH_FINISHED)
    members = [new_job(jobs, batch_id=batch.id) for _ in range(2)]
    for job in members:
        batches.add_job(batch, job.id)
    jobs.fail(members[0].id, "corrupt_image", "bad")
    assert batches.claim_completion(batch.id) is None
    jobs.cancel(members[1].id)
    assert tally(batches, batch.id) is None  # no tally written into an old record
    assert batches.claim_completion(batch.id) == batch
