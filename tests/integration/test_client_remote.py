"""The Python client and ``backdrop replace --server`` against the real stack (Redis, Celery worker, API)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common import keyspace
from common.client import ApiError, BackdropClient
from common.queue import jobs_in_broker
from tests.integration.stack import Stack
from worker.embedded import wait_until

BACKDROP = Path(sys.executable).parent / "backdrop"


def png(size: tuple[int, int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


@pytest.fixture(scope="module")
def running(stack_factory: Callable[..., Stack]) -> Stack:
    stack = stack_factory("local")
    stack.start_worker()
    stack.start_api()
    return stack


@pytest.fixture
def client(running: Stack) -> BackdropClient:
    return BackdropClient(running.api_url, running.token, timeout=60)


def test_cancel_a_queued_job_then_delete_it(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("local")
    stack.start_api()  # no worker yet: jobs stay queued
    client = BackdropClient(stack.api_url, stack.token, timeout=60)
    queued = client.submit(png((64, 64), 1), filename="queued.png")
    assert queued["status"] == "queued"
    canceled = client.cancel(queued["id"])
    assert canceled["status"] == "canceled" and canceled["results"] is None
    assert client.wait(queued["id"], timeout=5)["status"] == "canceled"
    # A batch deleted while its messages wait: its jobs are gone, and their messages find no record.
    deleted = client.submit_batch([png((64, 64), 3), png((64, 64), 4)])
    client.delete_batch(deleted["id"])
    lookups = [lambda: client.get_batch(deleted["id"])]
    lookups += [lambda job_id=job["id"]: client.get(job_id) for job in deleted["jobs"]]
    for lookup in lookups:
        with pytest.raises(ApiError) as raised:
            lookup()
        assert raised.value.status == 404

    stack.start_worker()
    done = client.wait(client.submit(png((64, 64), 2))["id"], timeout=120)
    assert done["status"] == "succeeded"  # the worker runs jobs, and the canceled one stays canceled
    assert client.get(queued["id"])["status"] == "canceled"
    # The deleted batch's messages are taken and dropped (the batch queue comes after single jobs).
    wait_until(lambda: not jobs_in_broker(stack.redis), 60, "the deleted batch's messages to be taken")
    assert [worker.alive() for worker in stack.workers] == [True]  # bad messages did not stop it

    client.delete(queued["id"])
    with pytest.raises(ApiError) as raised:
        client.get(queued["id"])
    assert (raised.value.status, raised.value.code) == (404, "not_found")


def test_submit_wait_download_round_trip(running: Stack, client: BackdropClient) -> None:
    job = client.submit(png((96, 64), 3), filename="p.png", background="red", outputs="composite,matte", quality=90)
    assert job["status"] in ("queued", "processing", "succeeded")
    done = client.wait(job["id"], timeout=120)
    assert done["status"] == "succeeded", done["error"]
    composite = client.download(done["results"]["composite"]["url"])
    matte = client.download(done["results"]["matte"]["url"])
    assert len(composite) == done["results"]["composite"]["bytes"]
    assert image_size(composite) == (96, 64)
    assert image_size(matte) == (96, 64)
    with Image.open(io.BytesIO(composite)) as image:
        assert image.format == "JPEG"


def test_errors_of_the_api_are_raised(running: Stack, client: BackdropClient) -> None:
    with pytest.raises(ApiError) as raised:
        client.submit(b"hello, not an image", filename="notes.jpg")
    assert (raised.value.status, raised.value.code) == (415, "unsupported_image")
    with pytest.raises(ApiError) as raised:
        BackdropClient(running.api_url, "bd_not_a_key").get("0" * 32)
    assert raised.value.status == 401


def test_batch_round_trip(running: Stack, client: BackdropClient, tmp_path: Path) -> None:
    sizes = [(64, 96), (80, 64), (72, 72)]
    batch = client.submit_batch([png(size, seed) for seed, size in enumerate(sizes)], background="white")
    assert batch["total"] == 3
    progress: list[dict] = []
    done = client.wait_batch(batch["id"], timeout=300, on_progress=progress.append)
    assert done["counts"]["succeeded"] == 3 and progress
    jobs = list(client.iter_batch_jobs(batch["id"]))
    assert [image_size(client.download(j["results"]["composite"]["url"])) for j in jobs] == sizes
    archive = client.download_batch_zip(batch["id"], tmp_path)
    with zipfile.ZipFile(archive) as zipped:
        assert sorted(zipped.namelist()) == [f"{index:05d}-{j['id']}.jpg" for index, j in enumerate(jobs)]
        assert [image_size(zipped.read(name)) for name in sorted(zipped.namelist())] == sizes


def test_cli_remote_mode(running: Stack, tmp_path: Path) -> None:
    photos = tmp_path / "in"
    (photos / "nested").mkdir(parents=True)
    sizes = {"a": (96, 64), "nested/b": (64, 80), "c": (72, 72)}
    for stem, size in sizes.items():
        (photos / f"{stem}.png").write_bytes(png(size, len(stem)))
    broken = photos / "broken.jpg"
    broken.write_text("this is text, not a photo")
    out = tmp_path / "out"
    records = [keyspace.JOB.format(job_id="*"), keyspace.BATCH.format(batch_id="*")]
    before = [len(list(running.redis.scan_iter(pattern))) for pattern in records]

    argv = [str(BACKDROP), "replace", str(photos), "--server", running.api_url, "--api-key", str(running.token)]
    result = subprocess.run(
        [*argv, "--output", str(out), "--matte", "-b", "green"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert f"3 of 4 photos done, written to {out}" in result.stderr
    assert re.search(re.escape(str(broken)) + r": (unsupported_image|corrupt_image): \S", result.stderr), result.stderr
    produced = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert produced == sorted([f"{stem}.jpg" for stem in sizes] + [f"{stem}.matte.png" for stem in sizes])
    for stem, size in sizes.items():
        assert image_size((out / f"{stem}.jpg").read_bytes()) == size
        assert image_size((out / f"{stem}.matte.png").read_bytes()) == size
    # Its results downloaded, the CLI deleted its batch: no record of it (or of its jobs) stays there.
    assert [len(list(running.redis.scan_iter(pattern))) for pattern in records] == before
