"""BatchStore: records, job lists in order, counts and the once-only completion claim, in a real Redis."""

from __future__ import annotations

from common.batches import BatchCounts, BatchStore
from common.jobs import JobStore
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
