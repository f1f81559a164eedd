"""The job service end to end: real Redis, real Celery worker processes, moto's S3 server, HTTP."""

from __future__ import annotations

import io
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.imaging import decode_image
from common.options import JobOptions, OutputKind
from common.pipeline import replace_photo
from tests.integration.stack import Stack
from worker.runtime import ModelRunner

BLUE = (0, 143, 213)


def rgba_photo(seed: int, size: tuple[int, int] = (96, 128), transparent_cols: int = 24) -> bytes:
    """A PNG whose left columns are fully transparent: there the matte is exactly 0."""
    width, height = size
    rng = np.random.default_rng(seed)
    rgba = np.empty((height, width, 4), np.uint8)
    rgba[..., :3] = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:, :transparent_cols, 3] = 0
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, "PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header claiming 30000x30000 pixels, with a tiny (truncated) image stream."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))


@pytest.fixture(scope="module", params=["local", "s3"])
def stack(request: pytest.FixtureRequest, stack_factory: Callable[..., Stack]) -> Stack:
    stack = stack_factory(request.param)
    stack.start_worker()
    stack.start_api()
    return stack


@pytest.fixture(scope="module")
def in_process_runner(service_weights: Path) -> ModelRunner:
    return ModelRunner.load(service_weights, "cpu", threads=1)


def expected_composite(stack: Stack, runner: ModelRunner, data: bytes, background: str) -> np.ndarray:
    options = JobOptions(background=background, format="png")
    return decode_png(replace_photo(data, options, runner.predict, stack.settings).outputs[OutputKind.COMPOSITE].data)


def test_upload_poll_download(stack: Stack, in_process_runner: ModelRunner) -> None:
    data = rgba_photo(1)
    response = stack.submit(data, background="#00ff80", format="png", outputs="composite,matte,cutout")
    assert response.status == 202, response.body
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] in ("queued", "processing")
    assert job["input"] == {"bytes": len(data), "format": "PNG", "width": 96, "height": 128, "url": None}

    done = stack.wait_for(job["id"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1
    assert done["started_at"] and done["finished_at"]
    composite = done["results"]["composite"]
    assert (composite["width"], composite["height"], composite["format"]) == (96, 128, "png")

    download = stack.download(composite["url"])
    assert download.status == 200
    assert download.headers["content-type"] == "image/png"
    assert len(download.body) == composite["bytes"]
    pixels = decode_png(download.body)
    assert pixels.shape == (128, 96, 3)
    assert np.all(pixels[:, :24] == (0, 255, 128))  # alpha 0: exactly the requested colour
    expected = expected_composite(stack, in_process_runner, data, "#00ff80")
    assert np.abs(pixels.astype(int) - expected.astype(int)).max() <= 1  # batching changes only rounding

    matte = decode_png(stack.download(done["results"]["matte"]["url"]).body)[..., 0]
    assert matte.shape == (128, 96) and np.all(matte[:, :24] == 0)
    with Image.open(io.BytesIO(stack.download(done["results"]["cutout"]["url"]).body)) as cutout:
        assert cutout.mode == "RGBA" and cutout.size == (96, 128)


def test_presigned_urls_use_the_public_address(stack: Stack) -> None:
    done = stack.wait_for(stack.submit(rgba_photo(2)).json()["id"])
    url = done["results"]["composite"]["url"]
    if stack.settings.storage == "s3":
        assert url.startswith(stack.settings.s3_public_endpoint_url)
        assert f"X-Amz-Expires={stack.settings.url_expiry_seconds}" in url
    else:
        assert url.startswith(f"{stack.api_url}/v1/files/results/{done['id']}/")
        tampered = url.replace("signature=", "signature=0")
        assert stack.download(tampered).status == 403


def test_exif_rotated_jpeg_keeps_its_displayed_size(stack: Stack) -> None:
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (90, 160, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 160x90, displayed 90x160
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    response = stack.submit(buffer.getvalue(), filename="rotated.jpg", background="blue")
    assert (response.json()["input"]["width"], response.json()["input"]["height"]) == (90, 160)
    done = stack.wait_for(response.json()["id"])
    assert done["status"] == "succeeded"
    result = stack.download(done["results"]["composite"]["url"])
    with Image.open(io.BytesIO(result.body)) as out:
        assert out.format == "JPEG" and out.size == (90, 160)


def test_unknown_job_is_404_and_pending_jobs_say_when_to_poll(stack: Stack) -> None:
    missing = stack.poll("0123456789abcdef0123456789abcdef")
    assert missing.status == 404
    assert missing.json()["error"]["code"] == "not_found"
    accepted = stack.submit(rgba_photo(4))
    assert accepted.headers["retry-after"] == "1"
    done = stack.wait_for(accepted.json()["id"])
    assert "retry-after" not in stack.poll(done["id"]).headers


def test_health_and_readiness(stack: Stack) -> None:
    from tests.integration.stack import http

    assert http("GET", f"{stack.api_url}/healthz").json() == {"status": "ok"}
    ready = http("GET", f"{stack.api_url}/readyz")
    assert ready.status == 200
    assert ready.json()["checks"] == {"redis": "ok", "storage": "ok"}


def test_readiness_lists_the_running_worker_as_it_recorded_itself(stack: Stack) -> None:
    from common import keyspace
    from tests.integration.stack import http
    from worker.embedded import wait_until

    def listed() -> list[dict[str, object]]:
        return http("GET", f"{stack.api_url}/readyz").json()["workers"]

    wait_until(lambda: bool(listed()), 30, "the worker's first heartbeat")
    records = [stack.redis.hgetall(key) for key in stack.redis.scan_iter(keyspace.WORKER.format(name="*"))]
    (record,) = records
    (worker,) = listed()
    assert (worker["engine"], worker["device"], worker["precision"]) == (
        record["engine"],
        record["device"],
        record["precision"],
    )
    assert worker["precision_reason"] == record["precision_reason"] != ""
    assert record["model_path"] not in str(listed())  # nor the host or process: tests/app/test_readiness.py


@pytest.mark.parametrize(
    ("payload", "fields", "status", "code"),
    [
        (b"hello, this is text", {}, 415, "unsupported_image"),
        (b"", {}, 415, "unsupported_image"),
        (png_bomb(), {}, 413, "image_too_large"),
        (None, {"background": "purple"}, 422, "invalid_option"),
        (None, {"format": "gif"}, 422, "invalid_option"),
        (None, {"quality": "high"}, 422, "invalid_option"),
        (None, {"outputs": "composite,thumbnail"}, 422, "invalid_option"),
        (None, {"background": "transparent", "format": "jpeg"}, 422, "invalid_option"),
        (None, {"colour": "blue"}, 422, "invalid_option"),
    ],
)
def test_bad_requests_get_typed_errors(
    stack: Stack, payload: bytes | None, fields: dict[str, str], status: int, code: str
) -> None:
    response = stack.submit(rgba_photo(5) if payload is None else payload, filename="photo.jpg", **fields)
    assert response.status == status, response.body
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_missing_image_field(stack: Stack) -> None:
    from tests.integration.stack import multipart

    body, content_type = multipart({"background": "blue"}, {})
    response = stack.request("POST", "/v1/jobs", body, {"Content-Type": content_type})
    assert response.status == 400 and response.json()["error"]["code"] == "invalid_input"


def test_truncated_jpeg_fails_its_job_and_the_worker_stays_up(stack: Stack) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((200, 200, 3), 120, np.uint8)).save(buffer, "JPEG")
    truncated = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    response = stack.submit(truncated, filename="truncated.jpg")
    assert response.status == 202  # the header is fine: only decoding finds the damage
    done = stack.wait_for(response.json()["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "corrupt_image"
    assert done["results"] is None
    assert all(worker.alive() for worker in stack.workers)
    assert stack.wait_for(stack.submit(rgba_photo(6)).json()["id"])["status"] == "succeeded"


def test_concurrent_jobs_are_batched(stack: Stack, in_process_runner: ModelRunner) -> None:
    images = [rgba_photo(100 + i, transparent_cols=4 + i) for i in range(16)]
    passes_before = stack.forward_passes()
    responses: list = [None] * 16
    barrier = threading.Barrier(16)

    def submit(i: int) -> None:
        barrier.wait()
        responses[i] = stack.submit(images[i], background="blue", format="png")

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    jobs = [stack.wait_for(response.json()["id"]) for response in responses]

    assert all(job["status"] == "succeeded" for job in jobs)
    passes = stack.forward_passes() - passes_before
    assert passes < 16, f"16 jobs took {passes} forward passes"
    for i, job in enumerate(jobs):
        pixels = decode_png(stack.download(job["results"]["composite"]["url"]).body)
        assert np.all(pixels[:, : 4 + i] == BLUE)  # its own transparent band, not a batch-mate's
        expected = expected_composite(stack, in_process_runner, images[i], "blue")
        assert np.abs(pixels.astype(int) - expected.astype(int)).max() <= 1


def test_decode_of_fixture_types(stack: Stack) -> None:
    """A WebP upload (the format of many phone and web exports) goes through like any other."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 80, 3), 200, np.uint8)).save(buffer, "WEBP")
    done = stack.wait_for(stack.submit(buffer.getvalue(), filename="p.webp", format="webp").json()["id"])
    assert done["status"] == "succeeded"
    decoded = decode_image(stack.download(done["results"]["composite"]["url"]).body, max_pixels=10**6, min_side=1)
    assert decoded.source_format == "WEBP" and (decoded.width, decoded.height) == (80, 64)


def test_upload_over_the_size_cap_is_413(stack: Stack) -> None:
    too_big = rgba_photo(12) + b"\0" * (stack.settings.max_upload_bytes + 1024)
    response = stack.submit(too_big)
    assert response.status == 413
    assert response.json()["error"]["code"] in ("payload_too_large", "image_too_large")


def test_background_image_upload(stack: Stack) -> None:
    from tests.integration.stack import multipart

    backdrop = io.BytesIO()
    Image.new("RGB", (300, 100), (10, 20, 30)).save(backdrop, "PNG")
    body, content_type = multipart(
        {"format": "png"}, {"image": ("p.png", rgba_photo(13)), "background_image": ("b.png", backdrop.getvalue())}
    )
    response = stack.request("POST", "/v1/jobs", body, {"Content-Type": content_type})
    assert response.status == 202, response.body
    assert response.json()["options"]["background"] == "image"
    done = stack.wait_for(response.json()["id"])
    assert done["status"] == "succeeded", done
    pixels = decode_png(stack.download(done["results"]["composite"]["url"]).body)
    assert np.all(pixels[:, :24] == (10, 20, 30))


def test_background_image_needs_background_image_mode(stack: Stack) -> None:
    from tests.integration.stack import multipart

    body, content_type = multipart(
        {"background": "red"}, {"image": ("p.png", rgba_photo(14)), "background_image": ("b.png", rgba_photo(15))}
    )
    response = stack.request("POST", "/v1/jobs", body, {"Content-Type": content_type})
    assert response.status == 422 and response.json()["error"]["code"] == "invalid_option"
    assert stack.submit(rgba_photo(16), background="image").status == 422
