"""The Redis stores against a real Redis server, one empty database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from common.batches import BatchStore
from common.jobs import InputInfo, Job, JobStore, new_job_id
from common.options import JobOptions

TTL_SECONDS = 600


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    connection.close()


@pytest.fixture
def jobs(client: redis.Redis) -> JobStore:
    return JobStore(client, TTL_SECONDS)


@pytest.fixture
def batches(client: redis.Redis, jobs: JobStore) -> BatchStore:
    return BatchStore(client, jobs)


def new_job(jobs: JobStore, owner: str = "owner-a", **kwargs: object) -> Job:
    job_id = new_job_id()
    info = InputInfo(bytes=10, format="PNG", width=4, height=3)
    return jobs.create(job_id, f"inputs/{job_id}", info, JobOptions(background="red"), owner=owner, **kwargs)
