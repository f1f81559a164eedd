"""A worker admits jobs by memory, and the largest photo allowed stays within the memory it is admitted with.

The admission test runs real jobs through a worker service in this process (real Redis, local storage,
MODNet on a small checkpoint) and reads from their records whether they met in one forward pass. For the
bound, a process of its own decodes a 50 Mpx PNG, runs MODNet (the fixture weights) at its capped input size,
composites at full resolution and encodes, as a worker does; its peak resident memory above what it held
before the job (MODNet loaded and warmed up) must stay within ``job_peak_bytes``, the estimate the
worker's memory budget admits jobs by. The whole-image implementation this replaced peaked at about
5.2 GB on this photo, 2.5 times the bound.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image

from bench.bench_memory import write_photo
from common.jobs import InputInfo, JobStatus, new_job_id
from common.options import JobOptions
from common.pipeline import job_peak_bytes
from common.settings import Settings
from common.storage import input_key
from tests.conftest import local_storage
from worker.batcher import BatchReason
from worker.processing import process_job
from worker.runtime import ModelRunner
from worker.service import WorkerService

REPO = Path(__file__).resolve().parents[2]
MEASURE = REPO / "bench" / "bench_memory.py"


@pytest.fixture(scope="module")
def largest_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A square PNG of the most pixels ``max_image_pixels`` allows."""
    side = math.isqrt(Settings().max_image_pixels)
    path = tmp_path_factory.mktemp("largest") / "largest.png"
    write_photo(path, side, side)
    return path


def test_largest_allowed_photo_stays_within_its_memory_estimate(largest_photo: Path, modnet_fixtures: Path) -> None:
    command = [
        sys.executable,
        str(MEASURE),
        "--child",
        "current",
        "--photo",
        str(largest_photo),
        "--case",
        "blue",
        "--weights",
        str(modnet_fixtures / "random_weights.ckpt"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])

    side = math.isqrt(Settings().max_image_pixels)
    assert measured["pixels"] == side * side
    assert measured["composite_size"] == [side, side]
    assert measured["composite_bytes"] > 0
    bound = job_peak_bytes(measured["pixels"])
    print(f"\npeak RSS above baseline {measured['peak_bytes'] / 1e6:.0f} MB, bound {bound / 1e6:.0f} MB")
    assert measured["peak_bytes"] <= bound


JOBS = 4


@pytest.fixture(scope="module")
def runner(official_format_checkpoint: Path) -> ModelRunner:
    return ModelRunner.load(official_format_checkpoint, "cpu", threads=1)


@pytest.fixture
def make_service(redis_url: str, runner: ModelRunner, tmp_path: Path) -> Iterator[Callable[[int, int], WorkerService]]:
    """A worker service with this memory budget (MB), whose batcher waits up to this many ms to fill a
    pass of ``JOBS`` photos: jobs running side by side meet in one pass, jobs running one at a time do not."""
    services: list[WorkerService] = []

    def make(budget_mb: int, delay_ms: int) -> WorkerService:
        settings = Settings(
            redis_url=redis_url,
            data_dir=tmp_path,
            inference_ref_size=64,
            max_batch_size=JOBS,
            max_delay_ms=delay_ms,
            worker_memory_budget_mb=budget_mb,
        )
        storage = local_storage(tmp_path)
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        services.append(WorkerService(settings, runner, storage, client))
        return services[-1]

    yield make
    for service in services:
        service.close()


def _pass_sizes(service: WorkerService, *, busy: bool = True) -> list[int]:
    """Run ``JOBS`` jobs of 400x300 photos at once, in threads as the worker's pool runs them; the size
    of the forward pass each one's matte came from.

    This thread attends too, standing for the rest of a busy worker: without it, three jobs that reach
    the batcher before the fourth has started would all be waiting, and their pass would run at once
    without it (the batcher does not wait for a partner that has not arrived). So a pass runs when it
    is full or its delay is out, and how many met in it depends on the memory budget alone. Not ``busy``:
    these jobs are all the worker has."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((300, 400, 3), 90, np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    ids = []
    for _ in range(JOBS):
        job_id = new_job_id()
        service.storage.put(input_key(job_id), data, "image/png")
        info = InputInfo(bytes=len(data), format="PNG", width=400, height=300)
        service.jobs.create(job_id, input_key(job_id), info, JobOptions(), owner="tests")
        ids.append(job_id)
    with ThreadPoolExecutor(JOBS) as pool, service.attendance.attending() if busy else contextlib.nullcontext():
        outcomes = list(pool.map(lambda job_id: process_job(service, job_id), ids))
    assert [outcome.status for outcome in outcomes] == [JobStatus.SUCCEEDED] * JOBS
    sizes = []
    for job_id in ids:
        job = service.jobs.get(job_id)
        assert job is not None and job.pass_size is not None
        sizes.append(job.pass_size)
    return sizes


def test_jobs_run_side_by_side_within_the_budget(make_service: Callable[[int, int], WorkerService]) -> None:
    assert JOBS * job_peak_bytes(400 * 300) < Settings().worker_memory_budget_mb * 2**20
    assert _pass_sizes(make_service(Settings().worker_memory_budget_mb, 2000)) == [JOBS] * JOBS


def test_jobs_above_the_budget_run_one_at_a_time(make_service: Callable[[int, int], WorkerService]) -> None:
    """Each job's estimate is above a 64 MB budget: each runs alone (its pass waits 250 ms for company
    that cannot come: the memory held by the job before it), and none waits for ever."""
    assert job_peak_bytes(400 * 300) > 64 * 2**20
    assert _pass_sizes(make_service(64, 250)) == [1] * JOBS


def test_jobs_waiting_for_memory_do_not_hold_up_the_pass_of_the_job_holding_it(
    make_service: Callable[[int, int], WorkerService],
) -> None:
    """The jobs queued behind the budget cannot join the pass of the job that holds it (they get in
    only once it has finished), so its pass runs as soon as it is the only job that could join it,
    not when a long delay is out."""
    service = make_service(64, 10_000)
    assert _pass_sizes(service, busy=False) == [1] * JOBS
    assert service.batcher.reasons == {BatchReason.NOBODY_ELSE: JOBS}
