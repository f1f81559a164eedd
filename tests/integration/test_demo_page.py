"""The demo page in headless Chromium (Playwright): pick a photo and a background, submit, see the result.

The first tests run the page against a real stack (Redis, a worker, the API). The others serve the page from
the demo blueprint through Playwright's request routing and answer the API calls themselves, to check what a
real worker rarely shows: the API key header, Retry-After, a failed job, a result on another origin.

Chromium is looked for at $BACKDROP_TEST_CHROMIUM, /usr/bin/chromium, then on PATH; without it (or without
the playwright package) these tests are skipped, except under CI=true, where they fail.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import numpy as np
import pytest
from flask import Flask
from PIL import Image

from api.routes.demo import demo
from tests.integration.stack import Stack, http

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request, Route

CHROMIUM_ENV = "BACKDROP_TEST_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS_ENV = "BACKDROP_TEST_SCREENSHOTS"  # a folder: the result page is saved there when set
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BLUE = (0, 143, 213)
PHOTO_SIZE = (160, 200)
TRANSPARENT_COLUMNS = 40
JOB_TIMEOUT_MS = 120_000

# Pages served through routing (no server): the page's own origin, and another one for results (like S3).
FAKE_ORIGIN = "http://backdrop.test"
FAKE_RESULTS_ORIGIN = "http://results.test"


def skip_or_fail(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (the browser tests must run when CI=true)")
    pytest.skip(reason)


def find_chromium() -> str | None:
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return configured if Path(configured).is_file() else None
    if Path(DEFAULT_CHROMIUM).is_file():
        return DEFAULT_CHROMIUM
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        where = os.environ.get(CHROMIUM_ENV) or f"{DEFAULT_CHROMIUM} or on PATH"
        skip_or_fail(f"no Chromium binary found ({where}); set {CHROMIUM_ENV} to one")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("the playwright package is not installed (pip install playwright; no browser download needed)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class PageLog:
    """What the page reported: uncaught errors and console messages."""

    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        return [text for text in self.console if "Content Security Policy" in text]


DESKTOP = {"width": 1100, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def page_and_log(browser: Browser) -> Iterator[tuple[Page, PageLog]]:
    yield from _page_and_log(browser, DESKTOP)


@pytest.fixture
def phone_page_and_log(browser: Browser) -> Iterator[tuple[Page, PageLog]]:
    yield from _page_and_log(browser, PHONE)


def _page_and_log(
    browser: Browser, viewport: dict[str, int], *, record_states: bool = True
) -> Iterator[tuple[Page, PageLog]]:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(30_000)
    log = PageLog()
    page.on("pageerror", lambda error: log.errors.append(str(error)))
    page.on("console", lambda message: log.console.append(f"{message.type}: {message.text}"))
    # Record every state the status line goes through (a page with a status line: the demo).
    if record_states:
        page.add_init_script(
            """
            window.__states = [];
            document.addEventListener("DOMContentLoaded", () => {
              const status = document.getElementById("status");
              const record = () => window.__states.push(status.dataset.state);
              record();
              new MutationObserver(record).observe(status, { attributes: true, attributeFilter: ["data-state"] });
            });
            """
        )
    try:
        yield page, log
    finally:
        context.close()


def photo_png(path: Path, size: tuple[int, int] = PHOTO_SIZE, transparent_columns: int = TRANSPARENT_COLUMNS) -> Path:
    """A PNG with random colours and fully transparent left columns: there the result is the background."""
    width, height = size
    rng = np.random.default_rng(7)
    rgba = np.empty((height, width, 4), np.uint8)
    rgba[..., :3] = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:, :transparent_columns, 3] = 0
    Image.fromarray(rgba).save(path, "PNG")
    return path


def solid_png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Path:
    Image.new("RGB", size, colour).save(path, "PNG")
    return path


def job_posts(page: Page) -> list[str]:
    """Records the URLs of the page's POST requests to /v1/jobs from now on."""
    posts: list[str] = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    return posts


def wait_for_result(page: Page, timeout: float = JOB_TIMEOUT_MS) -> None:
    page.wait_for_function(
        """() => {
          const image = document.getElementById("result");
          const failed = document.getElementById("status").dataset.state === "failed";
          return failed || (image.complete && image.naturalWidth > 0 && image.offsetParent !== null);
        }""",
        timeout=timeout,
    )
    state = page.get_attribute("#status", "data-state")
    assert state == "done", f"status {state!r}: {page.text_content('#error')}"


# --- against a real stack ----------------------------------------------------------------------------


@dataclass
class Demo:
    url: str
    api_key: str | None  # the key the stack made for its clients when the API requires one

    def open(self, page: Page) -> None:
        page.goto(self.url)
        if self.api_key:
            page.click("#api-key-box summary")
            page.fill("#api-key", self.api_key)


@pytest.fixture(scope="module")
def demo_page(browser: Browser, stack_factory: Callable[..., Stack]) -> Demo:
    stack = stack_factory("local")
    stack.start_worker()
    stack.start_api()
    assert http("GET", f"{stack.api_url}/").status == 200
    return Demo(f"{stack.api_url}/", stack.token)


def test_a_photo_gets_a_blue_background(page_and_log: tuple[Page, PageLog], demo_page: Demo, tmp_path: Path) -> None:
    page, log = page_and_log
    photo = photo_png(tmp_path / "portrait.png")
    demo_page.open(page)
    page.set_input_files("#photo", str(photo))
    page.wait_for_function("() => document.getElementById('original').naturalWidth > 0")
    page.click("[data-background=blue]")
    page.select_option("#format", "png")  # lossless, so the background is exact
    page.click("#submit")
    wait_for_result(page)

    assert "done" in page.text_content("#status").lower()
    assert page.is_visible("#original") and page.is_visible("#result")
    assert page.is_hidden("#error")
    assert page.evaluate("document.getElementById('original').src").startswith("blob:")
    states = page.evaluate("window.__states")
    assert states[0] == "idle" and states[-1] == "done"
    assert "uploading" in states and "queued" in states, states

    href = page.get_attribute("#download", "href")
    assert href and href.startswith(demo_page.url + "v1/files/"), href
    assert page.get_attribute("#download", "download"), "the link must offer a download"
    assert page.get_attribute("#result", "src") == href
    natural = page.evaluate("(image => [image.naturalWidth, image.naturalHeight])(document.getElementById('result'))")
    assert tuple(natural) == PHOTO_SIZE

    response = http("GET", href)
    assert response.status == 200
    assert response.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(response.body)) as image:
        assert image.size == PHOTO_SIZE
        pixels = np.asarray(image.convert("RGB"))
    band = pixels[:, :TRANSPARENT_COLUMNS].reshape(-1, 3)
    assert (band == BLUE).all(), np.unique(band, axis=0)[:5]

    assert not log.errors, log.errors
    assert not log.csp_violations(), log.csp_violations()
    screenshots = os.environ.get(SCREENSHOTS_ENV)
    if screenshots:
        Path(screenshots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(screenshots) / "demo-result.png"), full_page=True)


def test_a_text_file_is_refused_by_the_page_before_any_upload(
    page_and_log: tuple[Page, PageLog], demo_page: Demo, tmp_path: Path
) -> None:
    page, log = page_and_log
    text = tmp_path / "notes.jpg"  # its name says JPEG; its bytes say otherwise
    text.write_text("this is not a photo\n")
    posts = job_posts(page)
    demo_page.open(page)
    page.set_input_files("#photo", str(text))
    page.wait_for_selector("#error", state="visible")

    assert page.text_content("#error-title") == "This file is not a photo"
    assert "notes.jpg" in page.text_content("#error-message")
    assert page.is_hidden("#original-frame"), "no broken image for a file that is not one"
    assert page.is_hidden("#error-detail")
    page.click("#submit")
    assert page.text_content("#error-title") == "No photo chosen"
    assert "no_photo" not in page.inner_text("#error")
    assert posts == [], "nothing may be uploaded"
    assert page.is_enabled("#submit")
    assert not log.errors, log.errors
    assert not log.csp_violations(), log.csp_violations()


def test_a_refusal_of_the_server_gets_a_title_and_keeps_its_detail(
    page_and_log: tuple[Page, PageLog], demo_page: Demo, tmp_path: Path
) -> None:
    page, log = page_and_log
    demo_page.open(page)
    page.set_input_files("#photo", str(solid_png(tmp_path / "tiny.png", (200, 10, 10), size=(16, 16))))
    page.wait_for_function("() => document.getElementById('original').naturalWidth > 0")
    page.click("#submit")
    page.wait_for_selector("#error", state="visible")

    assert page.text_content("#error-title") == "This photo is too small"
    assert page.text_content("#error-message") == "Very small images cannot be processed; use a larger photo."
    assert page.is_visible("#error-detail")
    assert page.text_content("#error-code") == "image_too_small"
    assert page.text_content("#error-server-message").strip()
    assert page.get_attribute("#status", "data-state") == "failed"
    assert not log.errors, log.errors


def test_an_image_background_reaches_the_worker(
    page_and_log: tuple[Page, PageLog], demo_page: Demo, tmp_path: Path
) -> None:
    page, log = page_and_log
    demo_page.open(page)
    page.set_input_files("#photo", str(photo_png(tmp_path / "portrait.png")))
    page.click("[data-background=image]")
    page.set_input_files("#background-image", str(solid_png(tmp_path / "wall.png", (200, 30, 90))))
    page.wait_for_function("() => document.getElementById('background-image-name').textContent.includes('wall.png')")
    page.select_option("#format", "png")
    page.click("#submit")
    wait_for_result(page)

    response = http("GET", page.get_attribute("#download", "href") or "")
    assert response.status == 200
    with Image.open(io.BytesIO(response.body)) as image:
        band = np.asarray(image.convert("RGB"))[:, :TRANSPARENT_COLUMNS].reshape(-1, 3)
    assert (band == (200, 30, 90)).all(), np.unique(band, axis=0)[:5]
    assert not log.errors, log.errors
    assert not log.csp_violations(), log.csp_violations()


# --- against answers of our own (the page itself still comes from the demo blueprint) ---------------


@dataclass
class FakeApi:
    """Serves the demo blueprint and scripted API answers to a page through Playwright's routing."""

    poll_answers: list[tuple[int, dict[str, Any], dict[str, str]]]
    result_png: bytes = b""
    requests: list[tuple[float, str, str, dict[str, str], bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        app = Flask(__name__)
        app.register_blueprint(demo)
        self.client = app.test_client()

    def install(self, page: Page) -> None:
        page.route(f"{FAKE_ORIGIN}/**", self._handle)
        page.route(f"{FAKE_RESULTS_ORIGIN}/**", self._handle_result)

    def _handle(self, route: Route, request: Request) -> None:
        path = urlsplit(request.url).path
        body = request.post_data_buffer or b""
        self.requests.append((time.monotonic(), request.method, path, request.all_headers(), body))
        if path == "/v1/jobs" and request.method == "POST":
            job = {"id": "job-1", "status": "queued", "attempts": 0, "results": None, "error": None}
            self._json(route, 202, job, {"Retry-After": "1", "Location": "/v1/jobs/job-1"})
        elif path == "/v1/jobs/job-1":
            status, body, headers = self.poll_answers.pop(0) if len(self.poll_answers) > 1 else self.poll_answers[0]
            self._json(route, status, body, headers)
        elif path.startswith("/v1/"):
            self._json(route, 404, {"error": {"code": "not_found", "message": path}}, {})
        else:
            with self.client.get(path) as response:
                route.fulfill(status=response.status_code, headers=dict(response.headers), body=response.get_data())

    def _handle_result(self, route: Route, request: Request) -> None:
        route.fulfill(status=200, headers={"Content-Type": "image/png"}, body=self.result_png)

    @staticmethod
    def _json(route: Route, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        route.fulfill(status=status, headers={"Content-Type": "application/json", **headers}, body=json.dumps(body))

    def api_requests(self) -> list[tuple[float, str, str, dict[str, str], bytes]]:
        return [entry for entry in self.requests if entry[2].startswith("/v1/")]


def form_field(body: bytes, name: str) -> str | None:
    match = re.search(rb'name="' + name.encode() + rb'"\r\n\r\n([^\r]*)\r\n', body)
    return match.group(1).decode() if match else None


def test_api_key_custom_colour_retry_after_and_a_failed_job(page_and_log: tuple[Page, PageLog], tmp_path: Path) -> None:
    page, log = page_and_log
    api = FakeApi(
        poll_answers=[
            (200, {"id": "job-1", "status": "processing", "attempts": 1}, {"Retry-After": "2"}),
            (
                200,
                {"id": "job-1", "status": "failed", "error": {"code": "corrupt_image", "message": "truncated data"}},
                {},
            ),
        ]
    )
    api.install(page)
    page.goto(f"{FAKE_ORIGIN}/")
    page.click("#api-key-box summary")
    page.fill("#api-key", "secret-key")
    page.set_input_files("#photo", str(photo_png(tmp_path / "portrait.png")))
    page.fill("#custom-color", "#123456")
    assert page.is_checked("#bg-custom")
    assert page.text_content("#custom-color-value") == "#123456"
    page.click("#submit")
    page.wait_for_selector("#error", state="visible")

    assert page.text_content("#error-title") == "This photo could not be read"
    assert page.text_content("#error-message") == "The file seems damaged or incomplete. Save or export it again."
    assert page.text_content("#error-server-message") == "truncated data"
    assert page.text_content("#error-code") == "corrupt_image"
    assert page.get_attribute("#status", "data-state") == "failed"
    calls = api.api_requests()
    assert [(method, path) for _, method, path, _, _ in calls] == [
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs/job-1"),
        ("GET", "/v1/jobs/job-1"),
    ]
    assert all(headers.get("authorization") == "Bearer secret-key" for _, _, _, headers, _ in calls)
    post_body = calls[0][4]
    assert form_field(post_body, "background") == "#123456"
    assert form_field(post_body, "format") is None  # "Automatic" leaves the server's default
    # Retry-After: 1 s after the 202, then 2 s after "processing".
    assert calls[1][0] - calls[0][0] >= 0.9
    assert calls[2][0] - calls[1][0] >= 1.9
    assert "processing" in page.evaluate("window.__states")

    # The key is remembered by the browser.
    page.reload()
    assert page.input_value("#api-key") == "secret-key"
    assert not log.errors, log.errors
    assert not log.csp_violations(), log.csp_violations()


def test_transparent_forces_png_and_shows_a_result_from_another_origin(
    page_and_log: tuple[Page, PageLog], tmp_path: Path
) -> None:
    page, log = page_and_log
    result = io.BytesIO()
    Image.new("RGBA", PHOTO_SIZE, (0, 0, 0, 0)).save(result, "PNG")
    url = f"{FAKE_RESULTS_ORIGIN}/bucket/job-1/composite.png?X-Amz-Signature=abc"
    composite = {"url": url, "format": "png", "media_type": "image/png", "bytes": 1234, "width": 160, "height": 200}
    api = FakeApi(
        poll_answers=[(200, {"id": "job-1", "status": "succeeded", "results": {"composite": composite}}, {})],
        result_png=result.getvalue(),
    )
    api.install(page)
    page.goto(f"{FAKE_ORIGIN}/")
    page.select_option("#format", "jpeg")
    page.set_input_files("#photo", str(photo_png(tmp_path / "portrait.png")))
    page.click("[data-background=transparent]")
    assert page.is_disabled("#format") and page.input_value("#format") == "png"
    page.click("#submit")
    wait_for_result(page, timeout=30_000)

    post_body = api.api_requests()[0][4]
    assert form_field(post_body, "background") == "transparent"
    assert form_field(post_body, "format") == "png"
    assert page.get_attribute("#download", "href") == url
    assert "checkerboard" in (page.get_attribute("#result", "class") or "")
    # Another background gives the earlier format choice back.
    page.click("[data-background=white]")
    assert page.is_enabled("#format") and page.input_value("#format") == "jpeg"
    assert not log.errors, log.errors
    assert not log.csp_violations(), log.csp_violations()


def _succeeded(result_png: bytes) -> FakeApi:
    url = f"{FAKE_RESULTS_ORIGIN}/bucket/job-1/composite.png"
    composite = {"url": url, "format": "png", "media_type": "image/png", "bytes": 1234, "width": 160, "height": 200}
    return FakeApi(
        poll_answers=[(200, {"id": "job-1", "status": "succeeded", "results": {"composite": composite}}, {})],
        result_png=result_png,
    )


def _png_bytes(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_blur_and_image_backgrounds_are_offered_and_sent(page_and_log: tuple[Page, PageLog], tmp_path: Path) -> None:
    page, log = page_and_log
    api = _succeeded(_png_bytes(PHOTO_SIZE, (1, 2, 3)))
    api.install(page)
    page.goto(f"{FAKE_ORIGIN}/")
    page.set_input_files("#photo", str(photo_png(tmp_path / "portrait.png")))
    page.wait_for_function("() => document.getElementById('original').naturalWidth > 0")

    page.click("[data-background=blur]")
    assert page.is_checked("#bg-blur") and page.is_hidden("#background-image-row")
    page.click("#submit")
    wait_for_result(page, timeout=30_000)
    assert form_field(api.api_requests()[0][4], "background") == "blur"

    page.click("[data-background=image]")
    assert page.is_visible("#background-image-row")
    page.click("#submit")
    assert page.text_content("#error-title") == "No background image chosen"
    assert len([r for r in api.api_requests() if r[1] == "POST"]) == 1, "no upload without the background image"

    not_an_image = tmp_path / "wall.png"
    not_an_image.write_text("plain text")
    page.set_input_files("#background-image", str(not_an_image))
    page.wait_for_selector("#error", state="visible")
    assert page.text_content("#error-title") == "The background is not an image"

    beach = solid_png(tmp_path / "beach.png", (10, 120, 200))
    page.set_input_files("#background-image", str(beach))
    page.wait_for_function("() => document.getElementById('background-image-name').textContent.includes('beach')")
    page.click("#submit")
    wait_for_result(page, timeout=30_000)
    posts = [r for r in api.api_requests() if r[1] == "POST"]
    assert len(posts) == 2
    body = posts[1][4]
    assert form_field(body, "background") == "image"
    assert b'name="background_image"; filename="beach.png"' in body
    # (Routed requests carry file parts without their bytes; the real stack's test checks the pixels.)
    assert not log.errors, log.errors
    assert not log.csp_violations(), log.csp_violations()


def test_one_colour_control_and_the_file_name_once(page_and_log: tuple[Page, PageLog], tmp_path: Path) -> None:
    page, log = page_and_log
    FakeApi(poll_answers=[(200, {}, {})]).install(page)
    page.goto(f"{FAKE_ORIGIN}/")
    assert page.locator("input[type=color]").count() == 1
    assert page.locator("[data-background=custom] input[type=color]").count() == 1, "the swatch is the picker"
    assert "Custom colour" not in page.inner_text("main")

    page.set_input_files("#photo", str(photo_png(tmp_path / "portrait-of-me.png")))
    page.wait_for_function("() => document.getElementById('original').naturalWidth > 0")
    assert page.inner_text("main").count("portrait-of-me.png") == 1
    assert "portrait-of-me.png" in page.text_content("#photo-name")
    box = page.locator("#photo").bounding_box()
    assert box is not None and box["width"] <= 1 and box["height"] <= 1, "the native input (and its name) is hidden"
    assert page.is_visible("#photo-button")
    assert not log.errors, log.errors


def test_on_a_phone_the_result_is_scrolled_into_view(phone_page_and_log: tuple[Page, PageLog], tmp_path: Path) -> None:
    page, log = phone_page_and_log
    _succeeded(_png_bytes(PHOTO_SIZE, (1, 2, 3))).install(page)
    page.goto(f"{FAKE_ORIGIN}/")
    page.set_input_files("#photo", str(photo_png(tmp_path / "portrait.png")))
    page.wait_for_function("() => document.getElementById('original').naturalWidth > 0")
    below = page.evaluate("() => document.getElementById('original-frame').getBoundingClientRect().bottom")
    assert below > PHONE["height"], "on this viewport the result lies below the first screen"

    page.click("#submit")
    wait_for_result(page, timeout=30_000)
    page.wait_for_function(
        """() => {
          const box = document.getElementById('result').getBoundingClientRect();
          return box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight;
        }"""
    )
    assert page.evaluate("window.scrollY") > 0
    assert not log.errors, log.errors
