"""A worker whose engine qualifies for the GPU pipeline runs its background-replacement jobs through it:
the device batcher, the device post-processing and the JPEG codec, with the job stored and recorded as
on the CPU path. Here the pipeline runs on the CPU (the same torch code): only the CUDA condition of
``DevicePipeline.for_runner`` is set aside; Redis and storage are real."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image

from common import keyspace
from common.jobs import InputInfo, JobStatus, new_job_id
from common.options import JobOptions
from common.pipeline import replace_photo
from common.settings import Settings
from common.storage import LocalStorage, input_key
from worker.device_pipeline import DevicePipeline
from worker.processing import process_job
from worker.runtime import ModelRunner
from worker.service import WorkerService


@pytest.fixture(scope="module")
def runner(official_format_checkpoint: Path) -> ModelRunner:
    return ModelRunner.load(official_format_checkpoint, "cpu", threads=1)


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings(redis_url=redis_url, data_dir=tmp_path, inference_ref_size=64, max_delay_ms=0)


@pytest.fixture
def service(
    settings: Settings, runner: ModelRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerService]:
    monkeypatch.setattr(DevicePipeline, "for_runner", classmethod(lambda cls, r, s: cls(r.engine, s)))
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    storage = LocalStorage(tmp_path / "storage", base_url="http://127.0.0.1", secret=b"k" * 32)
    svc = WorkerService(settings, runner, storage, client)
    yield svc
    svc.close()


def photo_jpeg() -> bytes:
    rng = np.random.default_rng(7)
    coarse = rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    rgb = np.asarray(Image.fromarray(coarse).resize((64, 96), Image.Resampling.BICUBIC))
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_a_job_runs_through_the_device_pipeline(
    service: WorkerService, settings: Settings, runner: ModelRunner
) -> None:
    assert service.device_pipeline is not None and service.device_batcher is not None
    data = photo_jpeg()
    options = JobOptions(background="red", format="png")
    job_id = new_job_id()
    service.storage.put(input_key(job_id), data, "application/octet-stream")
    service.jobs.create(
        job_id, input_key(job_id), InputInfo(bytes=len(data), format="JPEG", width=64, height=96), options, owner="t"
    )

    outcome = process_job(service, job_id)

    assert outcome.status is JobStatus.SUCCEEDED
    job = service.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED
    stored = job.results["composite"]
    assert (stored.width, stored.height, stored.format) == (64, 96, "png")
    assert service.device_batcher.batches_run == 1 and service.batcher.batches_run == 0
    assert service.redis.hget(keyspace.WORKER.format(name=service.name), "forward_passes") == "1"
    # The photo is the network's own size, so the two paths see the same matte (random weights amplify
    # a grey level of input difference); their post-processing agrees within two levels.
    composite = np.asarray(Image.open(io.BytesIO(service.storage.get(stored.key))))
    expected = replace_photo(data, options, runner.predict, settings).outputs.items
    cpu = np.asarray(Image.open(io.BytesIO(next(iter(expected.values())).data)))
    assert int(np.abs(composite.astype(int) - cpu.astype(int)).max()) <= 2
