"""A worker whose engine qualifies for the GPU pipeline runs its background-replacement jobs through it:
the device batcher, the device post-processing and the JPEG codec, with the job stored and recorded as
on the CPU path. Here the pipeline runs on the CPU (the same torch code): only the CUDA condition of
``DevicePipeline.for_runner`` is set aside; Redis and storage are real."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import redis
import torch
from PIL import Image

from common import keyspace
from common.jobs import InputInfo, JobStatus, new_job_id
from common.options import JobOptions
from common.pipeline import RenderedOutputs, replace_photo
from common.settings import Settings
from common.storage import input_key
from tests.conftest import local_storage
from worker.device_pipeline import DevicePipeline, RenderedPhoto
from worker.processing import process_job
from worker.runtime import ModelRunner
from worker.service import WorkerService


@pytest.fixture(scope="module")
def runner(official_format_checkpoint: Path) -> ModelRunner:
    return ModelRunner.load(official_format_checkpoint, "cpu", threads=1)


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings(redis_url=redis_url, data_dir=tmp_path, inference_ref_size=64, max_delay_ms=0)


def device_service(settings: Settings, runner: ModelRunner, tmp_path: Path) -> WorkerService:
    """A worker service on real Redis and local storage; its device pipeline runs on the CPU when the
    caller has set aside ``DevicePipeline.for_runner``'s CUDA condition."""
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    storage = local_storage(tmp_path)
    return WorkerService(settings, runner, storage, client)


@pytest.fixture
def service(
    settings: Settings, runner: ModelRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerService]:
    monkeypatch.setattr(DevicePipeline, "for_runner", classmethod(lambda cls, r, s: cls(r.engine, s)))
    svc = device_service(settings, runner, tmp_path)
    yield svc
    svc.close()


def sized_jpeg(height: int, width: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_a_job_runs_through_the_device_pipeline(
    service: WorkerService, settings: Settings, runner: ModelRunner
) -> None:
    assert service.device_pipeline is not None and service.device_batcher is not None
    data = sized_jpeg(96, 64, 7)
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


def test_a_transparent_composite_and_its_cutout_are_one_encode(
    service: WorkerService, recorded: Callable[[object, str], list[tuple[object, ...]]]
) -> None:
    import worker.device_pipeline as device_pipeline

    encodes = recorded(device_pipeline, "encode_rgba_png")
    data = sized_jpeg(96, 64, 5)
    job_id = new_job_id()
    service.storage.put(input_key(job_id), data, "application/octet-stream")
    info = InputInfo(bytes=len(data), format="JPEG", width=64, height=96)
    options = JobOptions(background="transparent", outputs=["composite", "cutout"])
    service.jobs.create(job_id, input_key(job_id), info, options, owner="t")
    assert process_job(service, job_id).status is JobStatus.SUCCEEDED
    job = service.jobs.get(job_id)
    assert job is not None
    composite, cutout = (service.storage.get(job.results[kind].key) for kind in ("composite", "cutout"))
    assert composite == cutout and Image.open(io.BytesIO(cutout)).mode == "RGBA"
    assert [args[0].shape for args in encodes] == [(96, 64, 4)]  # type: ignore[attr-defined]


def test_a_lone_job_does_not_wait_out_either_batchers_delay(
    redis_url: str, runner: ModelRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DevicePipeline, "for_runner", classmethod(lambda cls, r, s: cls(r.engine, s)))
    # Ten seconds to fill a batch of 8, at the forward pass and again at the finishing: only the job
    # itself can join them, so both run at once.
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, inference_ref_size=64, max_delay_ms=10_000)
    service = device_service(settings, runner, tmp_path)
    try:
        data = sized_jpeg(96, 64, 3)
        job_id = new_job_id()
        service.storage.put(input_key(job_id), data, "application/octet-stream")
        info = InputInfo(bytes=len(data), format="JPEG", width=64, height=96)
        service.jobs.create(job_id, input_key(job_id), info, JobOptions(background="red"), owner="t")
        with ThreadPoolExecutor(1) as pool:
            outcome = pool.submit(process_job, service, job_id).result(timeout=8)  # under one delay
        assert outcome.status is JobStatus.SUCCEEDED
        assert service.device_batcher is not None and service.finishing_batcher is not None
        assert (service.device_batcher.batches_run, service.finishing_batcher.batches_run) == (1, 1)
    finally:
        service.close()


# --- finishing batched across jobs ----------------------------------------------------------------


@pytest.fixture
def batching_service(
    redis_url: str, runner: ModelRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerService]:
    """Two jobs fill a batch at once; the long delay only matters to a group that never fills."""
    monkeypatch.setattr(DevicePipeline, "for_runner", classmethod(lambda cls, r, s: cls(r.engine, s)))
    settings = Settings(
        redis_url=redis_url, data_dir=tmp_path, inference_ref_size=64, max_batch_size=2, max_delay_ms=1000
    )
    svc = device_service(settings, runner, tmp_path)
    yield svc
    svc.close()


def run_concurrently(service: WorkerService, jobs: list[tuple[bytes, JobOptions]]) -> list[str]:
    ids = []
    for data, options in jobs:
        job_id = new_job_id()
        service.storage.put(input_key(job_id), data, "application/octet-stream")
        info = InputInfo(bytes=len(data), format="JPEG", width=64, height=96)
        service.jobs.create(job_id, input_key(job_id), info, options, owner="t")
        ids.append(job_id)
    # A third job stands for the rest of a busy worker: the batchers cannot tell that nobody else is
    # coming, so a batch runs when it is full or its delay is out, whichever job reaches it first.
    with ThreadPoolExecutor(len(ids)) as pool, service.attendance.attending():
        outcomes = list(pool.map(lambda job_id: process_job(service, job_id), ids))
    assert [outcome.status for outcome in outcomes] == [JobStatus.SUCCEEDED] * len(ids)
    return ids


def record_batches(service: WorkerService, monkeypatch: pytest.MonkeyPatch) -> list[tuple[list, list]]:
    pipeline = service.device_pipeline
    assert pipeline is not None
    real = pipeline.render_batch
    calls: list[tuple[list, list]] = []

    def recorded(photos, mattes, options, background=None, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((list(photos), list(mattes)))
        return real(photos, mattes, options, background, **kwargs)

    monkeypatch.setattr(pipeline, "render_batch", recorded)
    return calls


def stored_composite(service: WorkerService, job_id: str) -> np.ndarray:
    job = service.jobs.get(job_id)
    assert job is not None
    return np.asarray(Image.open(io.BytesIO(service.storage.get(job.results["composite"].key))))


def test_concurrent_same_size_jobs_finish_in_one_batch_as_each_alone(
    batching_service: WorkerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = batching_service
    assert service.finishing_batcher is not None and service.device_pipeline is not None
    calls = record_batches(service, monkeypatch)
    options = JobOptions(background="red", format="png")
    ids = run_concurrently(service, [(sized_jpeg(96, 64, seed), options) for seed in (1, 2)])

    assert service.finishing_batcher.batches_run == 1
    assert [len(photos) for photos, _ in calls] == [2]
    photos, mattes = calls[0]
    alone = [
        service.device_pipeline.finish(photo, matte, options, options.background_spec())
        for photo, matte in zip(photos, mattes, strict=True)
    ]
    together = sorted(stored_composite(service, job_id).tobytes() for job_id in ids)
    expected = sorted(np.asarray(Image.open(io.BytesIO(one["composite"].data))).tobytes() for one in alone)
    for got, want in zip(together, expected, strict=True):
        assert int(np.abs(np.frombuffer(got, np.uint8).astype(int) - np.frombuffer(want, np.uint8)).max()) <= 1


def test_each_job_encodes_its_own_photo_outside_the_finishing_thread(
    batching_service: WorkerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = batching_service
    real = RenderedPhoto.encode
    threads: list[str] = []

    def encode(self: RenderedPhoto) -> RenderedOutputs:
        threads.append(threading.current_thread().name)
        return real(self)

    monkeypatch.setattr(RenderedPhoto, "encode", encode)
    options = JobOptions(background="red", format="png")
    run_concurrently(service, [(sized_jpeg(96, 64, seed), options) for seed in (1, 2)])
    assert service.finishing_batcher is not None and service.finishing_batcher.batches_run == 1
    # One batch post-processed both photos; their encodes ran in the two jobs' threads, side by side.
    assert len(threads) == 2 and len(set(threads)) == 2
    assert "device-finishing-batcher" not in threads


@pytest.mark.parametrize(
    "second",
    [(96, 64, JobOptions(background="blue", format="png")), (128, 96, JobOptions(background="red", format="png"))],
    ids=["other options", "other size"],
)
def test_jobs_of_other_sizes_or_options_finish_apart(
    batching_service: WorkerService, monkeypatch: pytest.MonkeyPatch, second: tuple[int, int, JobOptions]
) -> None:
    service = batching_service
    assert service.finishing_batcher is not None
    calls = record_batches(service, monkeypatch)
    height, width, options = second
    run_concurrently(
        service,
        [(sized_jpeg(96, 64, 1), JobOptions(background="red", format="png")), (sized_jpeg(height, width, 2), options)],
    )
    assert service.finishing_batcher.batches_run == 2
    assert [len(photos) for photos, _ in calls] == [1, 1]


def test_a_batch_out_of_device_memory_finishes_each_photo_alone(
    batching_service: WorkerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = batching_service
    pipeline = service.device_pipeline
    assert pipeline is not None and service.finishing_batcher is not None
    real = pipeline.render_batch
    sizes: list[int] = []

    def out_of_memory_for_two(photos, mattes, options, background=None, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(photos))
        if len(photos) > 1:
            raise torch.OutOfMemoryError("out of memory (simulated)")
        return real(photos, mattes, options, background, **kwargs)

    monkeypatch.setattr(pipeline, "render_batch", out_of_memory_for_two)
    options = JobOptions(background="red", format="png")
    ids = run_concurrently(service, [(sized_jpeg(96, 64, seed), options) for seed in (1, 2)])
    assert sizes == [2, 1, 1]
    for job_id in ids:
        assert stored_composite(service, job_id).shape == (96, 64, 3)
