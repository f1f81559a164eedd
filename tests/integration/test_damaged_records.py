"""A job whose record can no longer be read cannot run, but it must not hold up its batch for ever: its
worker fails it, so that its batch completes and its owner's quota is freed. Real Redis and storage,
a worker service in this process."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image

from common import keyspace
from common.jobs import InputInfo, JobStatus, new_job_id
from common.options import JobOptions
from common.queue import BATCH_QUEUE, jobs_in_broker, make_celery
from common.settings import Settings
from common.storage import input_key
from tests.conftest import local_storage
from worker.processing import process_job
from worker.reconciler import Reconciler
from worker.runtime import ModelRunner
from worker.service import WorkerService


@pytest.fixture(scope="module")
def runner(official_format_checkpoint: Path) -> ModelRunner:
    return ModelRunner.load(official_format_checkpoint, "cpu", threads=1)


@pytest.fixture
def service(redis_url: str, runner: ModelRunner, tmp_path: Path) -> Iterator[WorkerService]:
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, inference_ref_size=64, max_delay_ms=0)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    storage = local_storage(tmp_path)
    svc = WorkerService(settings, runner, storage, client)
    yield svc
    svc.close()


def _batch_of_two(service: WorkerService) -> tuple[str, list[str]]:
    buffer = io.BytesIO()
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    batch = service.batches.create("owner", 2)
    ids = []
    for _ in range(2):
        job_id = new_job_id()
        service.storage.put(input_key(job_id), data, "image/png")
        info = InputInfo(bytes=len(data), format="PNG", width=64, height=48)
        service.jobs.create(job_id, input_key(job_id), info, JobOptions(), owner="owner", batch_id=batch.id)
        ids.append(job_id)
    service.batches.add_jobs(batch, ids)
    return batch.id, ids


def test_a_damaged_job_of_a_batch_fails_and_its_batch_completes(service: WorkerService) -> None:
    batch_id, (good, damaged) = _batch_of_two(service)
    service.redis.hset(keyspace.JOB.format(job_id=damaged), "options", "{not json")

    assert process_job(service, damaged).detail == "damaged record"
    assert process_job(service, good).status is JobStatus.SUCCEEDED

    counts = service.batches.counts(batch_id)
    assert (counts.succeeded, counts.failed, counts.queued, counts.processing) == (1, 1, 0, 0)
    assert counts.finished == 2  # what makes the batch complete (and send its batch.completed event)
    assert service.jobs.pending_count("owner") == 0
    raw = service.redis.hgetall(keyspace.JOB.format(job_id=damaged))
    assert raw["status"] == "failed" and json.loads(raw["error"])["code"] == "record_damaged"
    assert process_job(service, damaged).detail == "damaged record"  # a redelivery changes nothing more
    assert service.batches.counts(batch_id).failed == 1


def test_a_record_with_no_valid_status_is_dropped_without_failing_the_worker(service: WorkerService) -> None:
    batch_id, (_, damaged) = _batch_of_two(service)
    service.redis.hset(keyspace.JOB.format(job_id=damaged), "status", "exploded")
    assert process_job(service, damaged).detail == "damaged record"
    assert service.redis.hget(keyspace.JOB.format(job_id=damaged), "status") == "exploded"  # left as it is
    assert service.batches.counts(batch_id).failed == 0


def test_the_reconciler_enqueues_a_stale_damaged_job_so_that_a_worker_fails_it(service: WorkerService) -> None:
    """Its message was lost: the reconciler sends it again (to its batch's queue), instead of leaving it
    pending for ever, and the worker that takes it fails it."""
    settings = Settings(redis_url=service.settings.redis_url, visibility_timeout=5, reconcile_after_timeouts=1)
    celery = make_celery(settings)
    batch_id, (_, damaged) = _batch_of_two(service)
    service.redis.hset(keyspace.JOB.format(job_id=damaged), "options", "{not json")
    service.redis.zadd(keyspace.PENDING_SINCE, {damaged: time.time() - 60})
    reconciler = Reconciler(service.redis, service.jobs, service.events, service.storage, celery, settings)
    assert reconciler.run_once(time.time()).requeued == [damaged]
    assert jobs_in_broker(service.redis) == {damaged}
    assert service.redis.llen(BATCH_QUEUE) == 1
    assert process_job(service, damaged).detail == "damaged record"
    assert service.batches.counts(batch_id).failed == 1
