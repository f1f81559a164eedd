"""Structured logs: a real job's lines in the API's and the worker's logs are JSON and carry its ids."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from tests.integration.stack import Stack
from worker.embedded import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def photo() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 80), (120, 90, 60)).save(buffer, "PNG")
    return buffer.getvalue()


def json_lines(log: str) -> list[dict[str, Any]]:
    """The log's lines that are JSON objects (gunicorn's master and Celery's banner write text)."""
    lines = []
    for line in log.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            lines.append(parsed)
    return lines


def lines_about(log: str, job_id: str) -> list[str]:
    return [line for line in log.splitlines() if job_id in line]


def test_a_jobs_lines_are_json_with_its_job_and_request_ids(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("local", BACKDROP_WORKER_METRICS_PORT="0", BACKDROP_LOG_LEVEL="DEBUG")
    stack.start_worker(concurrency=1)
    stack.start_api()
    request_id = f"test-{uuid.uuid4().hex}"
    submitted = stack.submit(photo(), headers={"X-Request-Id": request_id})
    assert submitted.status == 202 and submitted.headers["x-request-id"] == request_id
    job_id = submitted.json()["id"]
    assert stack.wait_for(job_id)["status"] == "succeeded"
    assert len(stack.poll(job_id).headers["x-request-id"]) == 32  # none sent: one is made

    api_log, worker_log = stack.api.log_of_this_run(), stack.workers[0].log_of_this_run()
    for log in (api_log, worker_log):
        # Every line that names the job is a JSON object that carries its id.
        for line in lines_about(log, job_id):
            assert json.loads(line).get("job_id") == job_id, line

    api_job_lines = [line for line in json_lines(api_log) if line.get("job_id") == job_id]
    submit_line = next(line for line in api_job_lines if line["message"].startswith("POST /v1/jobs "))
    assert submit_line["request_id"] == request_id and submit_line["status"] == 202
    assert submit_line["level"] == "INFO" and submit_line["logger"] == "api.access" and submit_line["time"]
    polls = [line for line in api_job_lines if line["message"].startswith(f"GET /v1/jobs/{job_id} ")]
    assert polls and all(line["request_id"] != request_id for line in polls)

    worker_job_lines = [line for line in json_lines(worker_log) if line.get("job_id") == job_id]
    # Celery's "received" and "succeeded" lines among them; those from the task's start on also carry
    # the submitting request's id, which travelled in the message.
    assert len(worker_job_lines) >= 2, worker_log
    assert {line.get("request_id") for line in worker_job_lines} <= {request_id, None}, worker_job_lines
    succeeded = [line for line in worker_job_lines if "succeeded" in line["message"]]
    assert succeeded and all(line.get("request_id") == request_id for line in succeeded), worker_job_lines
    assert any(line["level"] == "DEBUG" for line in json_lines(worker_log))  # BACKDROP_LOG_LEVEL sets the level


def test_the_level_and_the_text_format_follow_the_settings(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("local", BACKDROP_WORKER_METRICS_PORT="0", BACKDROP_LOG_LEVEL="WARNING")
    stack.start_api(BACKDROP_LOG_FORMAT="text")
    submitted = stack.submit(photo())
    assert submitted.status == 202
    # gunicorn writes its access line just after the answer has gone out: wait for it (a failure guard).
    wait_until(lambda: "/v1/jobs" in stack.api.log_of_this_run(), 30, "the access line")
    log = stack.api.log_of_this_run()
    assert not json_lines(log)
    assert "/v1/jobs" in log  # gunicorn's own access line, in text
