"""No accepted job is lost: a worker killed mid-batch, a worker stopped mid-batch, services down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from common.jobs import JobStore
from tests.integration.stack import Stack, http
from tests.integration.test_service import rgba_photo
from worker.embedded import free_port, wait_until

# Full-size network inputs make each forward pass take long enough to stop a worker inside one.
SLOW = {"BACKDROP_INFERENCE_REF_SIZE": "512", "BACKDROP_INFERENCE_MAX_SIDE": "512", "BACKDROP_MAX_BATCH_SIZE": "4"}


def statuses(stack: Stack, ids: list[str]) -> dict[str, str]:
    store = JobStore(stack.redis, stack.settings.job_ttl_seconds)
    return {job_id: store.get(job_id).status.value for job_id in ids}


def result_files(stack: Stack, job_id: str) -> list[str]:
    folder = stack.settings.data_dir / "storage" / "objects" / "results" / job_id
    return sorted(path.name for path in folder.iterdir())


def submit_many(stack: Stack, count: int) -> list[str]:
    ids = []
    for i in range(count):
        response = stack.submit(rgba_photo(500 + i, size=(160, 200)), background="red")
        assert response.status == 202
        ids.append(response.json()["id"])
    return ids


def test_kill_9_mid_batch_then_a_new_worker_finishes_every_job(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("local", **SLOW)
    worker = stack.start_worker(concurrency=8)
    stack.start_api()
    ids = submit_many(stack, 20)

    wait_until(lambda: "processing" in statuses(stack, ids).values(), 60, "a job to start")
    time.sleep(0.5)  # inside the first forward passes
    worker.send_signal(signal.SIGKILL)
    worker.process.wait(30)
    at_kill = statuses(stack, ids)
    interrupted = [job_id for job_id, status in at_kill.items() if status == "processing"]
    assert interrupted, f"no job was in flight when the worker died: {at_kill}"
    assert list(at_kill.values()).count("succeeded") < 20

    stack.start_worker(concurrency=8)
    jobs = {job_id: stack.wait_for(job_id, timeout=120) for job_id in ids}
    assert {job["status"] for job in jobs.values()} == {"succeeded"}
    for job_id in interrupted:
        assert jobs[job_id]["attempts"] >= 2  # delivered again after the kill
    for job_id in ids:
        assert result_files(stack, job_id) == ["composite.jpg"]  # one result per job, never a duplicate


def test_sigterm_lets_the_running_batch_finish(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("local", **SLOW)
    worker = stack.start_worker(concurrency=4)
    stack.start_api()
    ids = submit_many(stack, 8)

    wait_until(lambda: "processing" in statuses(stack, ids).values(), 60, "a job to start")
    running = [job_id for job_id, status in statuses(stack, ids).items() if status == "processing"]
    worker.send_signal(signal.SIGTERM)
    assert worker.process.wait(90) == 0, worker.log_tail()
    after = statuses(stack, ids)
    assert all(after[job_id] == "succeeded" for job_id in running), after

    stack.start_worker(concurrency=4)  # the jobs it had not started are still queued
    assert {stack.wait_for(job_id)["status"] for job_id in ids} == {"succeeded"}


def test_api_reports_unreachable_services(stack_factory: Callable[..., Stack]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    stack = stack_factory("s3")
    stack.start_api(BACKDROP_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", BACKDROP_S3_ENDPOINT_URL=dead)
    ready = http("GET", f"{stack.api_url}/readyz")
    assert ready.status == 503
    checks = ready.json()["checks"]
    assert checks["redis"].startswith("unreachable") and checks["storage"].startswith("unreachable")
    assert http("GET", f"{stack.api_url}/healthz").status == 200
    response = stack.submit(rgba_photo(9))
    assert response.status == 503
    assert response.json()["error"]["code"] == "queue_unavailable"  # the key cannot even be checked


@pytest.mark.slow
def test_backdrop_serve_runs_everything_and_keeps_jobs_across_restarts(tmp_path: Path, service_weights: Path) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("BACKDROP_")}
    env.update(
        BACKDROP_MODEL_PATH=str(service_weights),
        BACKDROP_TORCH_THREADS="1",
        BACKDROP_INFERENCE_REF_SIZE="128",
    )
    argv = [str(Path(sys.executable).parent / "backdrop"), "serve", "--port", str(port), "--data-dir", str(tmp_path)]
    base = f"http://127.0.0.1:{port}"

    output = tmp_path / "serve.log"

    def start() -> subprocess.Popen[bytes]:
        with open(output, "ab") as log:
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: _up(base) or process.poll() is not None, 180, "backdrop serve")
        assert process.poll() is None, output.read_text()
        return process

    def stop(process: subprocess.Popen[bytes]) -> str:
        process.send_signal(signal.SIGINT)
        assert process.wait(120) == 0, output.read_text()
        return output.read_text()

    process = start()
    try:
        stack = Stack.__new__(Stack)
        stack.api_url = base
        stack.workers = []
        stack.token = None  # backdrop serve runs without authentication (the embedded default)
        job_id = stack.submit(rgba_photo(11), background="blue").json()["id"]
        done = stack.wait_for(job_id)
        assert done["status"] == "succeeded"
        assert stack.download(done["results"]["composite"]["url"]).status == 200
    finally:
        log = stop(process)
    assert "stopping" in log
    assert not _up(base)

    process = start()  # the same data dir: Redis reloads its append-only file
    try:
        assert stack.poll(job_id).json()["status"] == "succeeded"
    finally:
        stop(process)


def _up(base: str) -> bool:
    try:
        return http("GET", f"{base}/healthz").status == 200
    except OSError:
        return False


def test_worker_without_weights_exits_with_instructions(stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    stack = stack_factory("local", BACKDROP_MODEL_PATH=str(tmp_path / "absent.ckpt"))
    worker = stack.start_worker(wait=False)
    assert worker.process.wait(120) != 0
    log = worker.log_tail(200)
    assert "absent.ckpt" in log and "backdrop weights fetch" in log
    assert not stack.worker_ready()
