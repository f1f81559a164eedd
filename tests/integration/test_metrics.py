"""Prometheus metrics of the API and a worker, scraped over HTTP while real jobs go through them."""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.stack import REPO_ROOT, Stack
from worker.embedded import ManagedProcess, api_argv, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only, never a proxy
STAGES = ("read", "decode", "network", "composite", "encode", "store")


def photo(colour: tuple[int, int, int], size: tuple[int, int] = (72, 96)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def scrape(url: str) -> Samples:
    """Every sample of a /metrics page, keyed by name and labels (parsed with prometheus_client)."""
    with OPENER.open(url, timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when absent (a labelled counter appears with its first increment)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def labelled(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for sample_name, labels in samples if sample_name == name]


def test_api_and_worker_metrics_move_with_real_jobs(stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    worker_port = free_port()
    stack = stack_factory(
        "local", BACKDROP_WORKER_METRICS_PORT=str(worker_port), BACKDROP_WORKER_METRICS_HOST="127.0.0.1"
    )
    multiprocess_dir = tmp_path / "prometheus"
    multiprocess_dir.mkdir()
    stack.start_api(PROMETHEUS_MULTIPROC_DIR=str(multiprocess_dir))
    api_metrics = f"{stack.api_url}/metrics"
    worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"

    before = scrape(api_metrics)  # no API key: the scrape needs none
    assert value(before, "backdrop_queue_depth", queue="interactive") == 0
    assert value(before, "backdrop_queue_depth", queue="batch") == 0

    # No worker yet: the first job waits in its queue.
    waiting = stack.submit(photo((200, 60, 40)), background="blue")
    assert waiting.status == 202, waiting.body
    queued = scrape(api_metrics)
    assert value(queued, "backdrop_queue_depth", queue="interactive") == 1
    assert value(queued, "backdrop_jobs_accepted_total", queue="interactive") == 1
    route = {"method": "POST", "route": "/v1/jobs", "status": "202"}
    assert value(queued, "backdrop_api_requests_total", **route) == 1
    assert value(queued, "backdrop_api_request_seconds_count", **route) == 1

    stack.start_worker(concurrency=4)
    assert stack.wait_for(waiting.json()["id"])["status"] == "succeeded"
    worker_before = scrape(worker_metrics)

    good = stack.submit(photo((40, 160, 90)), background="red").json()["id"]
    corrupt = stack.submit(photo((10, 20, 30))[:120], filename="cut.png").json()["id"]  # its header only
    assert stack.wait_for(good)["status"] == "succeeded"
    failed = stack.wait_for(corrupt)
    assert failed["status"] == "failed"
    code = failed["error"]["code"]

    api_after = scrape(api_metrics)
    assert value(api_after, "backdrop_jobs_accepted_total", queue="interactive") == 3
    assert value(api_after, "backdrop_api_requests_total", **route) == 3
    assert value(api_after, "backdrop_queue_depth", queue="interactive") == 0
    polls = {"method": "GET", "route": "/v1/jobs/<job_id>", "status": "200"}
    assert value(api_after, "backdrop_api_requests_total", **polls) >= 3

    worker_after = scrape(worker_metrics)

    def moved(name: str, **labels: str) -> float:
        return value(worker_after, name, **labels) - value(worker_before, name, **labels)

    assert moved("backdrop_jobs_succeeded_total", queue="interactive") == 1
    assert moved("backdrop_jobs_failed_total", queue="interactive", code=code) == 1
    assert moved("backdrop_job_latency_seconds_count", queue="interactive") == 2
    assert moved("backdrop_job_latency_seconds_sum", queue="interactive") > 0
    for stage in STAGES:
        # The corrupt photo was read and failed to decode: one more read than the other stages.
        expected = 2 if stage == "read" else 1
        assert moved("backdrop_job_stage_seconds_count", stage=stage) == expected, stage
    assert value(worker_after, "backdrop_job_stage_seconds_count", stage="network") >= 2
    assert value(worker_after, "backdrop_forward_seconds_count") >= 1
    assert value(worker_after, "backdrop_batch_size_count") == value(worker_after, "backdrop_forward_seconds_count")
    assert value(worker_after, "backdrop_batch_size_sum") >= 2  # images in all passes: one per job
    # Each pass is counted once, by what ran it (the worker is still running: none ran for closing).
    reasons = labelled(worker_after, "backdrop_batches_total")
    assert {series["batcher"] for series in reasons} == {"modnet-batcher"}
    ran = sum(value(worker_after, "backdrop_batches_total", **series) for series in reasons)
    assert ran == value(worker_after, "backdrop_forward_seconds_count")
    assert {series["reason"] for series in reasons} <= {"nobody_else", "full", "delay"}
    assert value(worker_after, "backdrop_worker_jobs_in_flight") == 0
    (model,) = labelled(worker_after, "backdrop_worker_model_info")
    assert model["device"] == "cpu" and model["engine"] and model["precision"]
    (precision,) = labelled(worker_after, "backdrop_worker_precision_info")
    assert precision["precision"] == model["precision"] and precision["engine"] == model["engine"]
    assert precision["verdict"] in {"passed", "failed", "not_run"}


def test_several_gunicorn_workers_report_every_request(stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    """Multiprocess mode: whichever gunicorn process answers a scrape, it counts every process's requests."""
    stack = stack_factory("local")
    multiprocess_dir = tmp_path / "prometheus"
    multiprocess_dir.mkdir()
    port = free_port()
    env = {**stack.env, "PROMETHEUS_MULTIPROC_DIR": str(multiprocess_dir)}
    api = ManagedProcess(
        "api2", api_argv("127.0.0.1", port, workers=3), env=env, log_path=tmp_path / "api.log", cwd=REPO_ROOT
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            # A generous timeout: a check given up on while the workers boot would still be served, and counted.
            try:
                return OPENER.open(f"{base}/healthz", timeout=60).status == 200
            except OSError:
                return False

        wait_until(lambda: up() or not api.alive(), 60, "the API")
        assert api.alive(), api.log_tail()
        for _ in range(29):
            OPENER.open(f"{base}/healthz", timeout=5).close()
        healthz = {"method": "GET", "route": "/healthz", "status": "200"}
        counts = {value(scrape(f"{base}/metrics"), "backdrop_api_requests_total", **healthz) for _ in range(6)}
        assert counts == {30.0}, counts
    finally:
        api.stop(timeout=10)
