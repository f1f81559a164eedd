"""Transient errors are retried (with backoff) and counted as attempts; bad input fails once."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image

from common.errors import StorageError
from common.jobs import InputInfo, JobStatus, new_job_id
from common.options import JobOptions
from common.settings import Settings
from common.storage import LocalStorage, background_key, input_key
from worker import celery_app, tasks
from worker.runtime import ModelRunner
from worker.service import WorkerService


class FlakyStorage(LocalStorage):
    """Local storage whose reads fail ``failures`` times, as an unreachable S3 would."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root, base_url="http://127.0.0.1", secret=b"k" * 32)
        self.failures = failures
        self.reads = 0

    def get(self, key: str) -> bytes:
        self.reads += 1
        if self.failures > 0:
            self.failures -= 1
            raise StorageError("connection refused (simulated)")
        return super().get(key)


@pytest.fixture(scope="module")
def runner(official_format_checkpoint: Path) -> ModelRunner:
    return ModelRunner.load(official_format_checkpoint, "cpu", threads=1)


@pytest.fixture
def service(
    redis_url: str, runner: ModelRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerService]:
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, inference_ref_size=64, max_delay_ms=0)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    svc = WorkerService(settings, runner, FlakyStorage(tmp_path / "storage", failures=0), client)
    monkeypatch.setattr(celery_app, "_service", svc)
    yield svc
    svc.close()


def _submit(service: WorkerService, data: bytes, options: JobOptions | None = None) -> str:
    job_id = new_job_id()
    service.storage.put(input_key(job_id), data, "application/octet-stream")
    service.jobs.create(
        job_id,
        input_key(job_id),
        InputInfo(bytes=len(data), format="PNG", width=64, height=64),
        options or JobOptions(),
        owner="tests",
    )
    return job_id


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 77, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_transient_errors_are_retried_and_counted(service: WorkerService) -> None:
    service.storage.failures = 2
    job_id = _submit(service, _png())
    tasks.process_job_task.apply(args=[job_id])
    job = service.jobs.get(job_id)
    assert job.status is JobStatus.SUCCEEDED
    assert job.attempts == 3
    assert service.storage.reads == 3


def test_retries_give_up_with_the_error_code(service: WorkerService) -> None:
    service.storage.failures = 1000
    job_id = _submit(service, _png())
    tasks.process_job_task.apply(args=[job_id])
    job = service.jobs.get(job_id)
    assert job.status is JobStatus.FAILED
    assert job.error.code == "storage_unavailable"
    assert job.attempts == tasks.process_job_task.max_retries + 1


def test_bad_input_fails_once(service: WorkerService) -> None:
    job_id = _submit(service, b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    tasks.process_job_task.apply(args=[job_id])
    job = service.jobs.get(job_id)
    assert job.status is JobStatus.FAILED
    assert job.error.code in ("corrupt_image", "unsupported_image")
    assert job.attempts == 1 and service.storage.reads == 1


@pytest.mark.parametrize(("width", "fmt"), [(16_400, "webp"), (65_600, "jpeg")])
def test_a_photo_too_wide_for_its_output_format_fails_once_with_a_typed_code(
    service: WorkerService, width: int, fmt: str
) -> None:
    """WebP holds at most 16,383 px a side and JPEG 65,500; the input limits let wider photos in."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, width, 3), 77, np.uint8)).save(buffer, "PNG")
    job_id = _submit(service, buffer.getvalue(), JobOptions(format=fmt))
    tasks.process_job_task.apply(args=[job_id])
    job = service.jobs.get(job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 1
    assert job.error.code == "image_too_large" and fmt.upper() in job.error.message


def test_a_finished_job_is_not_run_again(service: WorkerService) -> None:
    job_id = _submit(service, _png())
    tasks.process_job_task.apply(args=[job_id])
    reads = service.storage.reads
    tasks.process_job_task.apply(args=[job_id])  # a redelivered message
    assert service.storage.reads == reads
    assert service.jobs.get(job_id).attempts == 1


def test_backoff_grows_and_is_capped() -> None:
    assert [tasks._backoff(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize("visibility_timeout", [6, 25, 60])
def test_a_retry_never_waits_as_long_as_the_visibility_timeout(visibility_timeout: int) -> None:
    """A retry waits in its worker as an unacknowledged message: held past the visibility timeout, Redis
    hands it out again as a new delivery, and a storage outage of a few minutes at the default backoff
    (30 s, above the default 25 s timeout) then failed its jobs `worker_lost` (bench/bench_outage.py)."""
    settings = Settings(visibility_timeout=visibility_timeout, task_retry_backoff_max_seconds=30)
    countdowns = [tasks.retry_countdown(n, settings) for n in range(12)]
    assert max(countdowns) <= visibility_timeout / 2
    assert countdowns[:2] == [1, 2] and countdowns == sorted(countdowns)  # still doubling, then capped


def test_results_of_a_job_failed_while_it_ran_are_deleted(
    service: WorkerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failed meanwhile (the reconciler gave up on it): its results must not outlive it, as when canceled."""
    job_id = _submit(service, _png())
    succeed = service.jobs.succeed

    def failed_first(*args: object, **kwargs: object) -> bool:
        service.jobs.fail(job_id, "worker_lost", "taken for lost")
        return succeed(*args, **kwargs)

    monkeypatch.setattr(service.jobs, "succeed", failed_first)
    tasks.process_job_task.apply(args=[job_id])
    job = service.jobs.get(job_id)
    assert job.status is JobStatus.FAILED and job.results == {}
    assert not service.storage.exists(f"results/{job_id}/composite.jpg")
    assert [path for path in (service.storage.root / "objects" / "results").rglob("*") if path.is_file()] == []


def test_a_background_image_that_cannot_be_decoded_is_named_in_the_error(service: WorkerService) -> None:
    """Its header passed the API's probe, its data is damaged: the job fails naming the background."""
    job_id = _submit(service, _png(), JobOptions(background="image"))
    damaged = _png()[:60]  # the header and the start of the data
    key = background_key(job_id)
    service.storage.put(key, damaged, "application/octet-stream")
    service.redis.hset(f"backdrop:job:{job_id}", "background_image_key", key)
    tasks.process_job_task.apply(args=[job_id])
    job = service.jobs.get(job_id)
    assert job.status is JobStatus.FAILED and job.error.code == "corrupt_image"
    assert job.error.message.startswith("background_image: "), job.error.message
