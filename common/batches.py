"""Batches: many jobs submitted together with shared options, tracked as one record and a job list."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import redis
from pydantic import BaseModel

from common.jobs import KEY_PREFIX, Job, JobStatus, JobStore, now

BATCH_KEY = KEY_PREFIX + "batch:{batch_id}"
BATCH_JOBS_KEY = KEY_PREFIX + "batch:{batch_id}:jobs"  # list of job ids in submission order


class Batch(BaseModel):
    id: str
    owner: str
    created_at: datetime
    expires_at: datetime
    total: int


class BatchStore:
    def __init__(self, client: redis.Redis, jobs: JobStore) -> None:
        self.redis = client
        self.jobs = jobs

    def create(self, owner: str, total: int) -> Batch:
        stamp = now()
        batch = Batch(
            id=uuid.uuid4().hex,
            owner=owner,
            created_at=stamp,
            expires_at=stamp + timedelta(seconds=self.jobs.ttl),
            total=total,
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
        return Batch.model_validate(raw) if raw else None

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

    def delete(self, batch_id: str) -> None:
        self.redis.delete(BATCH_KEY.format(batch_id=batch_id), BATCH_JOBS_KEY.format(batch_id=batch_id))
