"""Batches against the real stack: 50 photos with a zip download, and interactive jobs first."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable

import numpy as np
from PIL import Image

from common.client import encode_multipart
from common.storage import input_key, result_key
from tests.integration.stack import Stack
from tests.integration.test_service import BLUE, decode_png, rgba_photo


def submit_batch(stack: Stack, images: list[bytes], **fields: str):
    body, content_type = encode_multipart(
        list(fields.items()), [("images", f"p{i}.png", data) for i, data in enumerate(images)]
    )
    return stack.request("POST", "/v1/batches", body, {"Content-Type": content_type})


def wait_batch(stack: Stack, batch_id: str, timeout: float = 300) -> dict:
    from worker.embedded import wait_until

    state: dict = {}

    def completed() -> bool:
        state.update(stack.request("GET", f"/v1/batches/{batch_id}").json())
        return state["status"] == "completed"

    wait_until(completed, timeout, f"batch {batch_id}", interval=0.5)
    return state


def test_batch_of_50_with_pages_and_zip(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("s3")
    stack.start_worker()
    stack.start_api()
    images = [rgba_photo(1000 + i, size=(64, 80), transparent_cols=2 + i % 20) for i in range(50)]
    response = submit_batch(stack, images, background="blue", format="png")
    assert response.status == 202, response.body
    batch = response.json()
    assert batch["total"] == 50 and response.headers["location"] == f"/v1/batches/{batch['id']}"

    done = wait_batch(stack, batch["id"])
    assert done["counts"]["succeeded"] == 50 and done["counts"]["queued"] == 0

    first = stack.request("GET", f"/v1/batches/{batch['id']}?page=1&page_size=20").json()
    third = stack.request("GET", f"/v1/batches/{batch['id']}?page=3&page_size=20").json()
    assert len(first["jobs"]) == 20 and first["next_page"] == 2
    assert len(third["jobs"]) == 10 and third["next_page"] is None
    assert all(job["batch_id"] == batch["id"] for job in first["jobs"])

    archive = stack.request("GET", f"/v1/batches/{batch['id']}/results.zip")
    assert archive.status == 200 and archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.body)) as zipped:
        names = sorted(zipped.namelist())
        assert len(names) == 50
        order = [job["id"] for page in (1, 2, 3) for job in stack.request(
            "GET", f"/v1/batches/{batch['id']}?page={page}&page_size=20").json()["jobs"]]  # fmt: skip
        assert names == [f"{i:05d}-{job_id}.png" for i, job_id in enumerate(order)]
        for i in (0, 17, 49):
            pixels = decode_png(zipped.read(names[i]))
            assert pixels.shape == (80, 64, 3)
            assert np.all(pixels[:, : 2 + i % 20] == BLUE)  # its own photo, in submission order

    # Deleted, over S3: the 50 photos and composites go with it, in DeleteObjects requests.
    assert stack.storage.exists(input_key(order[0])) and stack.storage.exists(result_key(order[0], "composite.png"))
    assert stack.request("DELETE", f"/v1/batches/{batch['id']}").status == 204
    assert stack.request("GET", f"/v1/batches/{batch['id']}").status == 404
    assert stack.request("GET", f"/v1/jobs/{order[0]}").status == 404
    assert [stack.storage.delete_prefix(prefix) for prefix in ("inputs/", "results/")] == [0, 0]  # nothing left


def test_batch_by_url_and_key_validation(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("local")
    stack.start_api()
    body = json.dumps({"keys": ["inputs/someone-elses-upload"], "options": {"background": "red"}}).encode()
    refused = stack.request("POST", "/v1/batches", body, {"Content-Type": "application/json"})
    assert refused.status == 404 and refused.json()["error"]["code"] == "not_found"  # not under its uploads
    bad_option = json.dumps({"image_urls": ["https://example.com/a.jpg"], "options": {"background": "purple"}})
    response = stack.request("POST", "/v1/batches", bad_option.encode(), {"Content-Type": "application/json"})
    assert response.status == 422 and response.json()["error"]["code"] == "invalid_option"
    unsafe = json.dumps({"image_urls": ["file:///etc/passwd"]}).encode()
    response = stack.request("POST", "/v1/batches", unsafe, {"Content-Type": "application/json"})
    assert response.status == 422 and response.json()["error"]["code"] == "unsafe_url"
    other = stack.new_key("other")
    ok = json.dumps({"image_urls": ["https://example.com/a.jpg"], "options": {"format": "png"}}).encode()
    created = stack.request("POST", "/v1/batches", ok, {"Content-Type": "application/json"}).json()
    assert created["total"] == 1 and created["jobs"][0]["input"]["url"] == "https://example.com/a.jpg"
    assert stack.request("GET", f"/v1/batches/{created['id']}", token=other).status == 404
    canceled = stack.request("POST", f"/v1/batches/{created['id']}/cancel").json()
    assert canceled["counts"]["canceled"] == 1 and canceled["status"] == "completed"


def test_interactive_jobs_go_before_a_waiting_batch(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("local", BACKDROP_INFERENCE_REF_SIZE="256", BACKDROP_INFERENCE_MAX_SIDE="256")
    stack.start_api()
    batch = submit_batch(stack, [rgba_photo(2000 + i) for i in range(20)], background="white").json()
    single = stack.submit(rgba_photo(3000), background="red").json()["id"]
    stack.start_worker(concurrency=2)  # both queues already hold work when the worker starts
    finished = stack.wait_for(single)
    assert finished["status"] == "succeeded"
    counts = stack.request("GET", f"/v1/batches/{batch['id']}").json()["counts"]
    # The single job, submitted last, did not wait for the batch submitted before it.
    assert counts["succeeded"] < 20, counts
    wait_batch(stack, batch["id"])


def test_a_bad_photo_fails_alone(stack_factory: Callable[..., Stack]) -> None:
    """A part that is not an image, or is too small, fails its own job with the typed error; the rest runs."""
    stack = stack_factory("local")
    stack.start_worker()
    stack.start_api()
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buffer, "PNG")
    response = submit_batch(stack, [rgba_photo(1), b"not an image", buffer.getvalue()], format="png")
    assert response.status == 202, response.body
    jobs = response.json()["jobs"]
    assert [job["status"] for job in jobs[1:]] == ["failed", "failed"]
    assert [job["error"]["code"] for job in jobs[1:]] == ["unsupported_image", "image_too_small"]
    done = wait_batch(stack, response.json()["id"])
    assert done["counts"]["succeeded"] == 1 and done["counts"]["failed"] == 2
