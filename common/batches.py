"""Batches: many jobs submitted together with shared options, tracked as one record and a job list."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

import redis
from pydantic import BaseModel

from common import keyspace
from common.errors import RecordDamaged, StorageError
from common.jobs import Job, JobStatus, JobStore, now
from common.storage import Storage, background_key, input_key

log = logging.getLogger(__name__)


class WithdrawnBatch(Exception):
    """The batch being written was withdrawn meanwhile: its request had gone without progress too long."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"batch {batch_id} was withdrawn while it was written")
        self.batch_id = batch_id


class Batch(BaseModel):
    id: str
    owner: str
    created_at: datetime
    expires_at: datetime
    total: int
    webhook_url: str | None = None  # receives one batch.completed event


class BatchCounts(BaseModel):
    """How many of a batch's jobs are in each state."""

    queued: int = 0
    processing: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0

    @property
    def finished(self) -> int:
        """Jobs in a final state: the one definition of a batch's progress."""
        return sum(getattr(self, status.value) for status in JobStatus if status.is_terminal)


# How long the request writing a batch may go without progress (a chunk written) before it is taken
# for dead: then a retry with its Idempotency-Key, or the workers' reconciler, withdraws what it wrote.
BATCH_WRITE_LEASE_SECONDS = 120.0


# How many of a batch's job ids are read from its list at a time when its jobs are canceled (and, when it
# is withdrawn, their records).
_JOB_IDS_PER_PAGE = 2000

# A batch's field set once every job of it is written (its request's answer may still be lost).
_WRITTEN = "written"
# KEYS = [batches being written, the batch record]; ARGV = [batch id]. 1 when the batch was on the list
# (now taken off, and its record marked written), 0 when it was not.
_WRITTEN_SCRIPT = f"""
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], '{_WRITTEN}', '1') end
return 1
"""


class BatchStore:
    def __init__(self, client: redis.Redis, jobs: JobStore) -> None:
        self.redis = client
        self.jobs = jobs
        self._written_script = client.register_script(_WRITTEN_SCRIPT)

    def create(self, owner: str, total: int, webhook_url: str | None = None, *, batch_id: str | None = None) -> Batch:
        """A new batch record (``batch_id``: the id an Idempotency-Key reserved, else a new one)."""
        stamp = now()
        batch = Batch(
            id=batch_id or uuid.uuid4().hex,
            owner=owner,
            created_at=stamp,
            expires_at=stamp + timedelta(seconds=self.jobs.ttl),
            total=total,
            webhook_url=webhook_url,
        )
        key = keyspace.BATCH.format(batch_id=batch.id)
        self.redis.hset(
            key,
            mapping={
                "id": batch.id,
                "owner": owner,
                "created_at": batch.created_at.isoformat(),
                "expires_at": batch.expires_at.isoformat(),
                "total": total,
                "webhook_url": webhook_url or "",
                **{keyspace.BATCH_TALLY.format(status=status.value): 0 for status in JobStatus},
            },
        )
        self.redis.expire(key, self.jobs.ttl)
        self.redis.zadd(keyspace.BATCHES_WRITING, {batch.id: time.time()})
        return batch

    # --- a batch being written: its request's progress, and batches whose request died -------------

    def progress(self, batch_id: str) -> None:
        """A sign of life of the request writing the batch; WithdrawnBatch when it was withdrawn meanwhile."""
        changed = self.redis.zadd(keyspace.BATCHES_WRITING, {batch_id: time.time()}, xx=True, ch=True)
        if changed == 0 and self.redis.zscore(keyspace.BATCHES_WRITING, batch_id) is None:
            raise WithdrawnBatch(batch_id)

    def written(self, batch_id: str) -> None:
        """Every job of the batch is written: off the list, and marked so, in one step; WithdrawnBatch
        when it was taken off the list first (by ``take_stalled``: it is being withdrawn)."""
        done = self._written_script(
            keys=[keyspace.BATCHES_WRITING, keyspace.BATCH.format(batch_id=batch_id)], args=[batch_id]
        )
        if not done:
            raise WithdrawnBatch(batch_id)

    def is_written(self, batch_id: str) -> bool:
        return self.redis.hget(keyspace.BATCH.format(batch_id=batch_id), _WRITTEN) == "1"

    def take_stalled(self, before: float, limit: int) -> list[str]:
        """Batches still being written whose request has shown no progress since ``before`` (Unix time),
        each taken off the list (so that its request's ``written`` now fails): the caller withdraws them."""
        found = self.redis.zrangebyscore(keyspace.BATCHES_WRITING, "-inf", before, start=0, num=limit)
        return [batch_id for batch_id in found if self.redis.zrem(keyspace.BATCHES_WRITING, batch_id)]

    def withdraw(self, batch_id: str, storage: Storage) -> int:
        """Cancel every unfinished job of a batch whose request failed or died part-way, delete the
        objects stored for its jobs (photos, backgrounds, results) and delete the batch, so that none of
        its jobs runs (a worker skips a canceled job, and discards the results of one it was running), no
        webhook fires and no photo waits for the retention sweep: its client was never told its id. A
        client's own upload that the request named stays. Returns how many jobs were canceled."""
        canceled, stored, _ = self._cancel_and_list_objects(batch_id)
        try:
            storage.delete_many(stored)
        except StorageError as exc:
            log.warning("batch %s: %d stored objects left to the retention sweep (%s)", batch_id, len(stored), exc)
        self.delete(batch_id)
        return canceled

    def erase(self, batch: Batch, storage: Storage) -> None:
        """Everything of a batch, for ``DELETE /v1/batches/{id}``: its unfinished jobs are canceled (a
        worker discards the results of one it was running), the objects stored for its jobs deleted as
        ``withdraw`` does, then its jobs' records and its own. A ``StorageError`` stops it before any
        record is deleted, so that nothing is lost track of and the same request again finishes it."""
        _, stored, pages = self._cancel_and_list_objects(batch.id)
        storage.delete_many(stored)
        for job_ids in pages:
            self.jobs.delete_many(job_ids, batch.owner)
        self.delete(batch.id)

    def _cancel_and_list_objects(self, batch_id: str) -> tuple[int, list[str], list[list[str]]]:
        """Cancel the batch's unfinished jobs, page by page, and list the objects stored for them.
        Returns how many were canceled, the objects' keys, and the pages of job ids read."""
        canceled = 0
        stored: list[str] = []
        pages = list(self._id_pages(batch_id))
        for job_ids in pages:
            canceled += self.jobs.cancel_many(job_ids)
            stored.extend(self._stored_objects(job_ids))
        return canceled, stored, pages

    def cancel_unfinished(self, batch_id: str) -> int:
        """Cancel every job of the batch still queued or processing, a few hundred jobs to a round trip.
        Returns how many were canceled."""
        return sum(self.jobs.cancel_many(job_ids) for job_ids in self._id_pages(batch_id))

    def _id_pages(self, batch_id: str) -> Iterator[list[str]]:
        """The batch's job ids, page by page of its list."""
        for start in range(0, self.job_count(batch_id), _JOB_IDS_PER_PAGE):
            yield self.job_ids(batch_id, start, start + _JOB_IDS_PER_PAGE - 1)

    def _stored_objects(self, job_ids: list[str]) -> list[str]:
        """The keys the API and the workers store for these jobs, read in one round trip: each one's photo
        and background where a request stored them (a client's upload is under its own key, left out),
        and the results of a finished one. Keys of a job without a readable record are the first two."""
        keys: list[str] = []
        for job_id, job in zip(job_ids, self.jobs.get_many(job_ids), strict=True):
            keys += [input_key(job_id), background_key(job_id)]
            if isinstance(job, Job):
                keys += [result.key for result in job.results.values()]
        return keys

    def add_jobs(self, batch: Batch, job_ids: Sequence[str]) -> None:
        """Append jobs to the batch's list, in submission order."""
        if not job_ids:
            return
        key = keyspace.BATCH_JOBS.format(batch_id=batch.id)
        with self.redis.pipeline() as pipe:
            pipe.rpush(key, *job_ids)
            pipe.expire(key, self.jobs.ttl)
            pipe.execute()

    def delete(self, batch_id: str) -> None:
        """The batch record, its job list and its completion mark (not its jobs' records)."""
        with self.redis.pipeline() as pipe:
            pipe.delete(
                keyspace.BATCH.format(batch_id=batch_id),
                keyspace.BATCH_JOBS.format(batch_id=batch_id),
                keyspace.BATCH_COMPLETED.format(batch_id=batch_id),
            )
            pipe.zrem(keyspace.BATCHES_WRITING, batch_id)
            pipe.execute()

    def job_count(self, batch_id: str) -> int:
        """How many jobs have been written into the batch's list so far."""
        return int(self.redis.llen(keyspace.BATCH_JOBS.format(batch_id=batch_id)))

    def get(self, batch_id: str) -> Batch | None:
        raw = self.redis.hgetall(keyspace.BATCH.format(batch_id=batch_id))
        return Batch.model_validate({k: v for k, v in raw.items() if v != ""}) if raw else None

    def job_ids(self, batch_id: str, start: int = 0, stop: int = -1) -> list[str]:
        return list(self.redis.lrange(keyspace.BATCH_JOBS.format(batch_id=batch_id), start, stop))

    def jobs_of(self, batch_id: str, start: int = 0, stop: int = -1) -> list[Job | None]:
        """The batch's jobs in submission order (None where a record expired, was deleted or is damaged),
        read in one round trip."""
        ids = self.job_ids(batch_id, start, stop)
        found: list[Job | None] = []
        for job_id, job in zip(ids, self.jobs.get_many(ids), strict=True):
            if isinstance(job, RecordDamaged):
                log.error("batch member %s has a damaged record; left out", job_id)
                job = None
            found.append(job)
        return found

    def counts(self, batch_id: str) -> BatchCounts:
        """How many of the batch's jobs are in each state: one read of the tally the job scripts keep,
        so that a poll, or the check after each of a batch's N jobs, costs one read, not N. A job deleted
        once finished stays counted in its final state. A record written before tallies existed is
        counted job by job."""
        fields = [keyspace.BATCH_TALLY.format(status=status.value) for status in JobStatus]
        tally = dict(zip(JobStatus, self.redis.hmget(keyspace.BATCH.format(batch_id=batch_id), fields), strict=True))
        if tally[JobStatus.QUEUED] is None:
            return self._scanned_counts(batch_id)
        return BatchCounts(**{status.value: int(n or 0) for status, n in tally.items()})

    def _scanned_counts(self, batch_id: str) -> BatchCounts:
        counts = {status.value: 0 for status in JobStatus}
        with self.redis.pipeline() as pipe:
            for job_id in self.job_ids(batch_id):
                pipe.hget(JobStore.key(job_id), "status")
            for status in pipe.execute():
                if status:
                    counts[status] += 1
        return BatchCounts(**counts)

    def finished(self, batch: Batch) -> bool:
        return self.counts(batch.id).finished >= batch.total

    def claim_completion(self, batch_id: str) -> Batch | None:
        """The batch, once, to the first caller that sees every job of it finished (for its webhook)."""
        batch = self.get(batch_id)
        if batch is None or not self.finished(batch):
            return None
        if not self.redis.set(keyspace.BATCH_COMPLETED.format(batch_id=batch_id), "1", nx=True, ex=self.jobs.ttl):
            return None
        return batch
