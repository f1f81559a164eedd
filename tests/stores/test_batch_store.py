"""BatchStore: records, job lists in order, counts and the once-only completion claim, in a real Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common import keyspace
from common.batches import BatchCounts, BatchStore, WithdrawnBatch
from common.errors import StorageError
from common.jobs import InputInfo, Job, JobStatus, JobStore, TransitionRefused, new_job_id
from common.options import JobOptions
from common.storage import LocalStorage, background_key, input_key, result_key, upload_key
from tests.conftest import local_storage, succeed_with_composite
from tests.stores.conftest import new_job


def test_a_batch_lists_its_jobs_in_submission_order(batches: BatchStore, jobs: JobStore) -> None:
    batch = batches.create("owner-a", 3, "https://example.invalid/hook")
    members = [new_job(jobs, batch_id=batch.id) for _ in range(3)]
    for job in members:
        batches.add_jobs(batch, [job.id])
    assert batches.get(batch.id) == batch
    assert batches.job_ids(batch.id) == [job.id for job in members]
    assert [job.id for job in batches.jobs_of(batch.id, 1, 2)] == [members[1].id, members[2].id]
    assert batches.get("nope") is None


def test_counts_and_completion_are_claimed_once(batches: BatchStore, jobs: JobStore) -> None:
    batch = batches.create("owner-a", 2)
    first, second = new_job(jobs, batch_id=batch.id), new_job(jobs, batch_id=batch.id)
    batches.add_jobs(batch, [first.id])
    batches.add_jobs(batch, [second.id])
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


def tally(batches: BatchStore, batch_id: str, status: str = "queued") -> str | None:
    field = keyspace.BATCH_TALLY.format(status=status)
    return batches.redis.hget(keyspace.BATCH.format(batch_id=batch_id), field)


def test_counts_are_read_from_the_tally_the_job_scripts_keep(
    batches: BatchStore, jobs: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = batches.create("owner-a", 4)
    members = [new_job(jobs, batch_id=batch.id) for _ in range(4)]
    for job in members:
        batches.add_jobs(batch, [job.id])
    jobs.start(members[0].id)
    jobs.start(members[0].id)  # a retry: still processing, counted once
    jobs.start(members[1].id)
    jobs.succeed(members[1].id, {})
    jobs.fail(members[2].id, "corrupt_image", "bad")
    with pytest.raises(TransitionRefused):
        jobs.cancel(members[2].id)  # already final: refused, and not counted again
    expected = BatchCounts(queued=1, processing=1, succeeded=1, failed=1)

    def scanned(*args: object) -> object:
        raise AssertionError("the counts read every job")

    monkeypatch.setattr(batches, "job_ids", scanned)
    assert batches.counts(batch.id) == expected
    assert not batches.finished(batch)
    jobs.cancel(members[0].id)
    jobs.cancel(members[3].id)
    assert batches.counts(batch.id) == BatchCounts(succeeded=1, failed=1, canceled=2)
    assert batches.claim_completion(batch.id) == batch


def test_a_job_deleted_once_canceled_stays_counted_so_its_batch_completes(batches: BatchStore, jobs: JobStore) -> None:
    batch = batches.create("owner-a", 2)
    first, second = new_job(jobs, batch_id=batch.id), new_job(jobs, batch_id=batch.id)
    for job in (first, second):
        batches.add_jobs(batch, [job.id])
    jobs.cancel(first.id)  # DELETE /v1/jobs/{id} cancels a pending job, then removes its record
    jobs.delete(first)
    jobs.start(second.id)
    jobs.succeed(second.id, {})
    assert batches.counts(batch.id) == BatchCounts(succeeded=1, canceled=1)
    assert batches.claim_completion(batch.id) == batch


def test_a_job_outliving_its_batch_record_does_not_bring_the_record_back(batches: BatchStore, jobs: JobStore) -> None:
    batch = batches.create("owner-a", 2)
    job = new_job(jobs, batch_id=batch.id)
    batches.add_jobs(batch, [job.id])
    batches.redis.delete(keyspace.BATCH.format(batch_id=batch.id))  # as when the batch record expired
    jobs.fail(job.id, "corrupt_image", "bad")
    new_job(jobs, batch_id=batch.id)
    assert batches.redis.exists(keyspace.BATCH.format(batch_id=batch.id)) == 0


def test_a_batch_recorded_before_tallies_existed_is_counted_job_by_job(batches: BatchStore, jobs: JobStore) -> None:
    batch = batches.create("owner-a", 2)
    fields = [keyspace.BATCH_TALLY.format(status=status.value) for status in JobStatus]
    batches.redis.hdel(keyspace.BATCH.format(batch_id=batch.id), *fields)
    members = [new_job(jobs, batch_id=batch.id) for _ in range(2)]
    for job in members:
        batches.add_jobs(batch, [job.id])
    jobs.fail(members[0].id, "corrupt_image", "bad")
    assert batches.counts(batch.id) == BatchCounts(queued=1, failed=1)
    assert batches.claim_completion(batch.id) is None
    jobs.cancel(members[1].id)
    assert tally(batches, batch.id) is None and tally(batches, batch.id, "canceled") is None  # none written
    assert batches.counts(batch.id) == BatchCounts(failed=1, canceled=1)
    assert batches.claim_completion(batch.id) == batch


def test_a_batch_being_written_is_either_written_or_taken_to_withdraw_never_both(batches: BatchStore) -> None:
    taken = batches.create("owner", 2)
    assert batches.take_stalled(time.time() - 60, 10) == []  # it showed progress just now
    assert batches.take_stalled(time.time() + 1, 10) == [taken.id]
    with pytest.raises(WithdrawnBatch):  # its request, late, learns it was taken for dead
        batches.written(taken.id)
    with pytest.raises(WithdrawnBatch):
        batches.progress(taken.id)
    assert not batches.is_written(taken.id)

    finished = batches.create("owner", 2)
    batches.progress(finished.id)
    batches.written(finished.id)
    assert batches.is_written(finished.id)
    assert batches.take_stalled(time.time() + 1, 10) == []


def test_withdraw_cancels_the_unfinished_jobs_and_deletes_the_batch(
    batches: BatchStore, jobs: JobStore, tmp_path: Path
) -> None:
    batch = batches.create("owner", 3)
    done, waiting = new_job(jobs, batch_id=batch.id), new_job(jobs, batch_id=batch.id)
    batches.add_jobs(batch, [done.id, waiting.id, "0123456789abcdef0123456789abcdef"])  # the last has no record
    jobs.fail(done.id, "corrupt_image", "no")
    assert batches.withdraw(batch.id, local_storage(tmp_path)) == 1
    assert jobs.get(waiting.id).status is JobStatus.CANCELED and jobs.get(done.id).status is JobStatus.FAILED
    assert batches.get(batch.id) is None and batches.job_ids(batch.id) == []
    assert batches.take_stalled(time.time() + 1, 10) == []


def _stored_job(jobs: JobStore, storage: LocalStorage, batch_id: str | None, *, upload: str | None = None) -> Job:
    """A queued job whose photo and background are in storage, as the API stores them (or whose photo
    is the client's own upload, named by the request)."""
    job_id = new_job_id()
    photo = upload or input_key(job_id)
    storage.put(photo, b"photo", "image/png")
    storage.put(background_key(job_id), b"background", "image/png")
    info = InputInfo(bytes=5, format="PNG", width=4, height=3)
    options = JobOptions(background="image")
    return jobs.create(
        job_id, photo, info, options, owner="owner", batch_id=batch_id, background_image_key=background_key(job_id)
    )


def test_withdraw_deletes_what_the_batch_stored_but_not_the_clients_uploads(
    batches: BatchStore, jobs: JobStore, tmp_path: Path
) -> None:
    storage = local_storage(tmp_path)
    batch = batches.create("owner", 3)
    queued = _stored_job(jobs, storage, batch.id)
    done = _stored_job(jobs, storage, batch.id)
    succeed_with_composite(jobs, storage, done.id, b"composite")
    result = result_key(done.id, "composite.jpg")
    assert jobs.get(done.id).status is JobStatus.SUCCEEDED
    uploaded = _stored_job(jobs, storage, batch.id, upload=upload_key("owner", "photo.png"))
    other = _stored_job(jobs, storage, None)  # another request's job, in no batch
    batches.add_jobs(batch, [queued.id, done.id, uploaded.id])
    assert batches.withdraw(batch.id, storage) == 2
    # The client never learned the batch's id: nothing it sent or the workers made for it stays behind
    # for the retention sweep, only what the client stored itself (its upload may be named again).
    gone = [queued.input_key, queued.background_image_key, done.input_key, done.background_image_key, result]
    assert [key for key in gone if storage.exists(key)] == []
    assert not storage.exists(str(uploaded.background_image_key))
    assert storage.exists(uploaded.input_key) and storage.get(uploaded.input_key) == b"photo"
    assert storage.exists(other.input_key) and storage.exists(str(other.background_image_key))


def test_a_storage_failure_leaves_the_objects_to_retention_and_still_withdraws(
    batches: BatchStore,
    jobs: JobStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = local_storage(tmp_path)
    batch = batches.create("owner", 1)
    queued = _stored_job(jobs, storage, batch.id)
    batches.add_jobs(batch, [queued.id])

    def unavailable(keys: object) -> None:
        raise StorageError("the bucket went away")

    monkeypatch.setattr(storage, "delete_many", unavailable)
    with caplog.at_level(logging.WARNING, logger="common.batches"):
        assert batches.withdraw(batch.id, storage) == 1
    assert jobs.get(queued.id).status is JobStatus.CANCELED and batches.get(batch.id) is None
    assert storage.exists(queued.input_key)
    said = [record.getMessage() for record in caplog.records]
    assert any("2 stored objects left to the retention sweep" in line for line in said), said


class _CountingConnection(redis.Connection):
    """A real connection that counts the requests it sends (a pipeline is one)."""

    sent = 0

    def send_packed_command(self, command: object, check_health: bool = True) -> None:
        type(self).sent += 1
        super().send_packed_command(command, check_health)


@pytest.fixture
def counting(redis_url: str) -> Iterator[redis.Redis]:
    """A client whose requests are counted in ``_CountingConnection.sent``."""
    client = redis.Redis(
        connection_pool=redis.ConnectionPool.from_url(
            redis_url, decode_responses=True, connection_class=_CountingConnection
        )
    )
    yield client
    client.close()


@pytest.mark.parametrize("how", ["withdraw", "cancel_unfinished"])
def test_a_large_batch_is_canceled_in_a_few_round_trips(counting: redis.Redis, how: str, tmp_path: Path) -> None:
    jobs = JobStore(counting, 600)
    batches = BatchStore(counting, jobs)
    batch = batches.create("owner", 1200)
    members = [new_job(jobs, batch_id=batch.id) for _ in range(1200)]
    batches.add_jobs(batch, [job.id for job in members] + ["0123456789abcdef0123456789abcdef"])
    jobs.start(members[7].id)
    jobs.succeed(members[7].id, {})
    jobs.fail(members[900].id, "corrupt_image", "no")
    jobs.start(members[3].id)
    _CountingConnection.sent = 0
    storage = local_storage(tmp_path)
    canceled = batches.withdraw(batch.id, storage) if how == "withdraw" else batches.cancel_unfinished(batch.id)
    round_trips = _CountingConnection.sent
    assert canceled == 1198
    # One job at a time was 1,200 round trips; a few script calls of hundreds of jobs each is what it takes.
    assert round_trips <= 10
    statuses = [jobs.get(job.id).status for job in members]
    assert statuses[7] is JobStatus.SUCCEEDED and statuses[900] is JobStatus.FAILED
    assert statuses.count(JobStatus.CANCELED) == 1198
    if how == "withdraw":
        assert batches.get(batch.id) is None
    else:
        assert batches.counts(batch.id).canceled == 1198 and batches.finished(batch)


def test_a_large_batch_is_deleted_in_a_few_round_trips(counting: redis.Redis, tmp_path: Path) -> None:
    jobs = JobStore(counting, 600)
    batches = BatchStore(counting, jobs)
    batch = batches.create("owner", 1200)
    members = [new_job(jobs, owner="owner", batch_id=batch.id) for _ in range(1200)]
    batches.add_jobs(batch, [job.id for job in members])
    jobs.start(members[7].id)
    jobs.succeed(members[7].id, {})
    _CountingConnection.sent = 0
    batches.erase(batch, local_storage(tmp_path))
    # Canceling, reading the records for their objects, deleting the records: a few requests each.
    assert _CountingConnection.sent <= 12
    assert [job.id for job in members if jobs.get(job.id) is not None] == []
    assert jobs.pending_count("owner") == 0 and batches.get(batch.id) is None and batches.job_ids(batch.id) == []


def test_canceling_a_batch_leaves_a_damaged_record_as_it_is(batches: BatchStore, jobs: JobStore) -> None:
    batch = batches.create("owner", 3)
    members = [new_job(jobs, batch_id=batch.id) for _ in range(3)]
    batches.add_jobs(batch, [job.id for job in members])
    jobs.redis.hset(JobStore.key(members[1].id), "status", "garbled")
    assert batches.cancel_unfinished(batch.id) == 2
    assert jobs.redis.hget(JobStore.key(members[1].id), "status") == "garbled"
    assert [jobs.get(members[index].id).status for index in (0, 2)] == [JobStatus.CANCELED] * 2
    assert batches.cancel_unfinished(batch.id) == 0  # canceled once: nothing more to do
