"""Batches: many jobs submitted together with shared options, tracked as one record and a job list."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import redis
from pydantic import BaseModel

from common.job_view import job_view
from common.jobs import KEY_PREFIX, Job, JobStatus, JobStore, now
from common.settings import Settings
from common.storage import Storage

BATCH_KEY = KEY_PREFIX + "batch:{batch_id}"
BATCH_JOBS_KEY = KEY_PREFIX + "batch:{batch_id}:jobs"  # list of job ids in submission order
BATCH_DONE_KEY = KEY_PREFIX + "batch:{batch_id}:completed"  # set once, by whoever sees the last job finish


class Batch(BaseModel):
    id: str
    owner: str
    created_at: datetime
    expires_at: datetime
    total: int
    webhook_url: str | None = None  # receives one batch.completed event


class BatchStore:
    def __init__(self, client: redis.Redis, jobs: JobStore) -> None:
        self.redis = client
        self.jobs = jobs

    def create(self, owner: str, total: int, webhook_url: str | None = None) -> Batch:
        stamp = now()
        batch = Batch(
            id=uuid.uuid4().hex,
            owner=owner,
            created_at=stamp,
            expires_at=stamp + timedelta(seconds=self.jobs.ttl),
            total=total,
            webhook_url=webhook_url,
        )
        key = BATCH_KEY.format(batch_id=batch.id)
        self.redis.hset(
            key,
            mapping={
                "id": batch.id,
                "owner": owner,
                "created_at": batch.created_at.isoformat(),
                "expires_at": batch.expires_at.isoformat(),
                "total": total,
                "webhook_url": webhook_url or "",
            },
        )
        self.redis.expire(key, self.jobs.ttl)
        return batch

    def add_job(self, batch: Batch, job_id: str) -> None:
        key = BATCH_JOBS_KEY.format(batch_id=batch.id)
        with self.redis.pipeline() as pipe:
            pipe.rpush(key, job_id)
            pipe.expire(key, self.jobs.ttl)
            pipe.execute()

    def get(self, batch_id: str) -> Batch | None:
        raw = self.redis.hgetall(BATCH_KEY.format(batch_id=batch_id))
        return Batch.model_validate({k: v for k, v in raw.items() if v != ""}) if raw else None

    def job_ids(self, batch_id: str, start: int = 0, stop: int = -1) -> list[str]:
        return list(self.redis.lrange(BATCH_JOBS_KEY.format(batch_id=batch_id), start, stop))

    def jobs_of(self, batch_id: str, start: int = 0, stop: int = -1) -> list[Job | None]:
        """The batch's jobs in submission order (None where a record expired or was deleted)."""
        return [self.jobs.get(job_id) for job_id in self.job_ids(batch_id, start, stop)]

    def counts(self, batch_id: str) -> dict[str, int]:
        counts = {status.value: 0 for status in JobStatus}
        with self.redis.pipeline() as pipe:
            for job_id in self.job_ids(batch_id):
                pipe.hget(JobStore.key(job_id), "status")
            for status in pipe.execute():
                if status:
                    counts[status] += 1
        return counts

    def finished(self, batch: Batch) -> bool:
        counts = self.counts(batch.id)
        return sum(counts[s.value] for s in JobStatus if s.is_terminal) >= batch.total

    def claim_completion(self, batch_id: str) -> Batch | None:
        """The batch, once, to the first caller that sees every job of it finished (for its webhook)."""
        batch = self.get(batch_id)
        if batch is None or not self.finished(batch):
            return None
        if not self.redis.set(BATCH_DONE_KEY.format(batch_id=batch_id), "1", nx=True, ex=self.jobs.ttl):
            return None
        return batch

    def delete(self, batch_id: str) -> None:
        self.redis.delete(
            BATCH_KEY.format(batch_id=batch_id),
            BATCH_JOBS_KEY.format(batch_id=batch_id),
            BATCH_DONE_KEY.format(batch_id=batch_id),
        )


def batch_view(
    store: BatchStore, batch: Batch, storage: Storage, settings: Settings, page: int = 1, page_size: int = 100
) -> dict[str, Any]:
    """The public JSON of a batch: counts per status and one page of its jobs, in submission order."""
    counts = store.counts(batch.id)
    finished = sum(counts[s.value] for s in JobStatus if s.is_terminal)
    start = (page - 1) * page_size
    jobs = store.jobs_of(batch.id, start, start + page_size - 1)
    return {
        "id": batch.id,
        "status": "completed" if finished >= batch.total else "pending",
        "created_at": batch.created_at.isoformat(),
        "expires_at": batch.expires_at.isoformat(),
        "total": batch.total,
        "webhook_url": batch.webhook_url,
        "counts": counts,
        "jobs": [job_view(job, storage, settings) for job in jobs if job is not None],
        "page": page,
        "next_page": page + 1 if start + page_size < batch.total else None,
    }
