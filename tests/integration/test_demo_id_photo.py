"""The demo page's ID-photo mode in headless Chromium (Playwright): a document, its background, the photo with
its guide lines, the report as a checklist, the print sheet.

As in test_demo_page.py, the first test runs the page against a real stack; the others answer the API calls
themselves (the catalogue is the real one) to check refusals, the phone layout and what the page does when it
cannot read the report.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from PIL import Image

from api.routes.id_specs import IdSpecList
from common.id_specs import get_spec, list_specs
from tests.integration import test_demo_page as demo_tests
from tests.integration.stack import http
from tests.integration.test_demo_page import (
    FAKE_ORIGIN,
    FAKE_RESULTS_ORIGIN,
    JOB_TIMEOUT_MS,
    PHONE,
    SCREENSHOTS_ENV,
    Demo,
    FakeApi,
    PageLog,
    form_field,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request, Route

# The fixtures of the background-mode tests, shared by name.
browser = demo_tests.browser
page_and_log = demo_tests.page_and_log
phone_page_and_log = demo_tests.phone_page_and_log
demo_page = demo_tests.demo_page

SPEC_ID = "icao-35x45"
ID_ERROR_CODES = [
    "no_face",
    "multiple_faces",
    "face_cut_off",
    "resolution_too_low",
    "file_size_unreachable",
    "sheet_does_not_fit",
    "no_alpha_channel",
    "unknown_id_spec",
    "matte_does_not_cover_face",
]
UNKNOWN_ERROR_TITLE = "Something went wrong"

# Where each guide line of the overlay sits, as a share of the photo's height from the top.
GUIDES_JS = """() => {
  const photo = document.getElementById("id-photo").getBoundingClientRect();
  const at = (element) => {
    const box = element.getBoundingClientRect();
    return ((box.top + box.bottom) / 2 - photo.top) / photo.height;
  };
  const lines = {};
  document.querySelectorAll("#id-guides line[data-guide]").forEach((line) => (lines[line.dataset.guide] = at(line)));
  const bands = {};
  document.querySelectorAll("#id-guides rect[data-guide]").forEach((rect) => {
    const box = rect.getBoundingClientRect();
    bands[rect.dataset.guide] = [(box.top - photo.top) / photo.height, (box.bottom - photo.top) / photo.height];
  });
  return { lines, bands };
}"""

CHECKLIST_JS = """() => Array.from(document.querySelectorAll("#id-checklist > li")).map((item) => ({
  rule: item.dataset.rule,
  status: item.dataset.status,
  text: item.querySelector(".check-name").textContent,
  badge: item.querySelector(".badge").textContent,
  values: (item.querySelector(".check-values") || { textContent: "" }).textContent,
}))"""


def wait_for_id_photo(page: Page, timeout: float = JOB_TIMEOUT_MS) -> None:
    page.wait_for_function(
        """() => {
          const image = document.getElementById("id-photo");
          const state = document.getElementById("status").dataset.state;
          return state === "failed" || (state === "done" && image.complete && image.naturalWidth > 0
            && image.offsetParent !== null);
        }""",
        timeout=timeout,
    )
    state = page.get_attribute("#status", "data-state")
    assert state == "done", f"status {state!r}: {page.text_content('#error')}"


def open_id_mode(page: Page) -> None:
    page.click("[data-testid=mode-id-photo]")
    page.wait_for_selector("#id-spec:enabled")


def _catalogue() -> dict[str, Any]:
    return IdSpecList(specs=list_specs()).model_dump(mode="json")


# --- against a real stack ----------------------------------------------------------------------------


def test_an_id_photo_with_its_guide_lines_checklist_and_sheet(
    page_and_log: tuple[Page, PageLog], demo_page: Demo, face_fixtures: Path
) -> None:
    page, log = page_and_log
    spec = get_spec(SPEC_ID)
    demo_page.open(page)
    assert page.is_visible("#background-options") and page.is_hidden("#id-options")
    open_id_mode(page)
    assert page.is_hidden("#background-options") and page.is_hidden("#format-field")
    assert page.text_content("#submit") == "Make the ID photo"

    label = page.locator(f"#id-spec option[value='{SPEC_ID}']").text_content() or ""
    assert spec.name_en in label and spec.name_zh and spec.name_zh in label and "413\u00d7531 px" in label, label
    page.select_option("#id-spec", SPEC_ID)
    colours = page.eval_on_selector_all("#id-backgrounds input", "inputs => inputs.map(input => input.value)")
    assert colours == ["", *spec.backgrounds], "the document's own colour first, then each it allows"
    assert page.is_checked("#id-bg-auto")
    page.select_option("#id-sheet", "4x6")
    page.check("#id-cut-out")
    page.set_input_files("#photo", str(face_fixtures / "test2.cutout.png"))
    page.wait_for_function("() => document.getElementById('original').naturalWidth > 0")
    page.click("#submit")
    wait_for_id_photo(page)

    job_id = page.get_attribute("#id-frame", "data-job")
    auth = {"Authorization": f"Bearer {demo_page.api_key}"} if demo_page.api_key else {}
    job = http("GET", f"{demo_page.url}v1/jobs/{job_id}", headers=auth).json()
    assert job["status"] == "succeeded", job
    options = job["options"]
    assert options["id_spec"] == [SPEC_ID] and options["sheet"] == "4x6" and options["matte_source"] == "alpha"
    assert options["background"] == "auto", "the spec's own colour unless another is chosen"
    assert page.is_hidden("#result-frame") and page.is_hidden("#error")

    # The photo, shown at its pixel aspect.
    natural = page.evaluate("(i => [i.naturalWidth, i.naturalHeight])(document.getElementById('id-photo'))")
    assert tuple(natural) == spec.pixel_size
    box = page.locator("#id-photo").bounding_box()
    assert box is not None and box["width"] > 100
    assert abs(box["width"] / box["height"] - spec.width_px / spec.height_px) < 0.01, box
    photo_href = page.get_attribute("#id-download-photo", "href") or ""
    photo = http("GET", photo_href)
    assert photo.status == 200 and photo.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(photo.body)) as image:
        assert image.format == "JPEG" and image.size == spec.pixel_size

    # The guide lines sit where the report's ratios say.
    report_href = page.get_attribute("#id-download-report", "href") or ""
    assert page.get_attribute("#id-download-report", "download")
    response = http("GET", report_href)
    assert response.status == 200
    report = json.loads(response.body)
    assert report["spec_id"] == SPEC_ID
    guides = page.evaluate(GUIDES_JS)
    expected = {
        "crown": report["crown_margin_ratio"],
        "eyes": 1 - report["eye_line_ratio"],
        "chin": 1 - report["chin_margin_ratio"],
    }
    assert set(guides["lines"]) == set(expected)
    for name, ratio in expected.items():
        assert abs(guides["lines"][name] - ratio) <= 0.01, (name, guides["lines"][name], ratio)
    # ICAO bounds the head height: the chin's band runs from the crown plus its minimum to the crown plus its maximum.
    head = next(rule for rule in report["rules"] if rule["rule"] == "head_height")
    chin_band = guides["bands"]["chin-allowed"]
    assert abs(chin_band[0] - (report["crown_margin_ratio"] + head["allowed"]["min"])) <= 0.01, chin_band
    assert abs(chin_band[1] - (report["crown_margin_ratio"] + head["allowed"]["max"])) <= 0.01, chin_band
    assert chin_band[0] <= guides["lines"]["chin"] <= chin_band[1]
    page.uncheck("#id-show-guides")
    assert page.is_hidden("#id-guides")
    page.check("#id-show-guides")

    # The checklist: every rule of the report, in order, with its status.
    checklist = page.evaluate(CHECKLIST_JS)
    assert [(item["rule"], item["status"]) for item in checklist] == [
        (rule["rule"], rule["status"]) for rule in report["rules"]
    ]
    for item in checklist:
        assert "_" not in item["text"], item
        assert item["badge"].endswith("Pass" if item["status"] == "pass" else "Fail"), item
    head_item = next(item for item in checklist if item["rule"] == "head_height")
    assert f"{report['head_height_ratio'] * 100:.1f} %" in head_item["values"], head_item
    verdict = page.text_content("#id-verdict") or ""
    assert page.get_attribute("#id-verdict", "data-passed") == str(report["passed"]).lower()
    assert f"{len(report['rules'])} checks" in verdict, verdict

    # The sheet link downloads a JPEG.
    sheet_href = page.get_attribute("#id-download-sheet", "href") or ""
    assert page.is_visible("#id-download-sheet") and page.get_attribute("#id-download-sheet", "download")
    sheet = http("GET", sheet_href)
    assert sheet.status == 200 and sheet.headers["content-type"] == "image/jpeg"
    assert sheet.body[:3] == b"\xff\xd8\xff"
    with Image.open(io.BytesIO(sheet.body)) as image:
        assert image.format == "JPEG" and sorted(image.size) == [1200, 1800]  # 4 x 6 in at 300 dpi
    assert "4 \u00d7 6 in" in (page.text_content("#id-sheet-info") or "")

    assert not log.errors, log.errors
    assert not log.csp_violations(), log.csp_violations()
    screenshots = os.environ.get(SCREENSHOTS_ENV)
    if screenshots:
        Path(screenshots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(screenshots) / "demo-id-photo.png"), full_page=True)


# --- against answers of our own ----------------------------------------------------------------------


@dataclass
class FakeIdApi(FakeApi):
    """FakeApi with the real catalogue at /v1/id-specs and result files of our own at /files/."""

    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # path -> (media type, body)
    specs_need_key: str | None = None  # the catalogue is refused without this API key

    def _handle(self, route: Route, request: Request) -> None:
        path = urlsplit(request.url).path
        if path == "/v1/id-specs":
            headers = request.all_headers()
            self.requests.append((0.0, request.method, path, headers, b""))
            if self.specs_need_key and headers.get("authorization") != f"Bearer {self.specs_need_key}":
                self._json(route, 401, {"error": {"code": "unauthorized", "message": "no API key"}}, {})
            else:
                self._json(route, 200, _catalogue(), {})
        elif path in self.files:
            media_type, body = self.files[path]
            route.fulfill(status=200, headers={"Content-Type": media_type}, body=body)
        else:
            super()._handle(route, request)

    def _handle_result(self, route: Route, request: Request) -> None:
        path = urlsplit(request.url).path
        if path in self.files:
            media_type, body = self.files[path]
            route.fulfill(status=200, headers={"Content-Type": media_type}, body=body)
        else:
            route.fulfill(status=404, body=b"")


def _failed(code: str) -> FakeIdApi:
    job = {"id": "job-1", "status": "failed", "error": {"code": code, "message": f"the worker said {code}"}}
    return FakeIdApi(poll_answers=[(200, job, {})])


def _jpeg(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def _report(spec_id: str, *, passed: bool) -> dict[str, Any]:
    status = "pass" if passed else "fail"
    return {
        "spec_id": spec_id,
        "crown_margin_ratio": 0.08,
        "head_height_ratio": 0.75,
        "eye_line_ratio": 0.5,
        "chin_margin_ratio": 0.17,
        "dpi": 300.0,
        "jpeg_quality": 88,
        "passed": passed,
        "rules": [
            {
                "rule": "head_height",
                "status": status,
                "measured": 0.75 if passed else 0.62,
                "allowed": {"min": 0.7111, "max": 0.8},
                "unit": "ratio of the photo height",
                "basis": "official",
                "sources": ["ICAO Doc 9303 Part 3"],
            },
            {
                "rule": "background_colour",
                "status": "pass",
                "measured": "light-grey",
                "allowed": ["white", "off-white", "light-grey", "light-blue"],
                "unit": "name",
                "basis": "official",
                "sources": [],
            },
            {
                "rule": "file_size",
                "status": "pass",
                "measured": 48000.0,
                "allowed": {"min": None, "max": 60000.0},
                "unit": "bytes",
                "basis": "official",
                "sources": ["the size asked for"],
            },
        ],
    }


def _succeeded_id_photo(*, report_origin: str, passed: bool = True) -> FakeIdApi:
    spec = get_spec(SPEC_ID)
    photo_url = f"{FAKE_RESULTS_ORIGIN}/bucket/job-1/id_photo.jpg"
    sheet_url = f"{FAKE_RESULTS_ORIGIN}/bucket/job-1/sheet.jpg"
    report_url = f"{report_origin}/files/job-1/report.json"
    photo = _jpeg(spec.pixel_size, (240, 240, 240))
    results = {
        f"id_photo.{SPEC_ID}": {
            "url": photo_url,
            "format": "jpeg",
            "media_type": "image/jpeg",
            "bytes": len(photo),
            "width": spec.width_px,
            "height": spec.height_px,
        },
        f"report.{SPEC_ID}": {"url": report_url, "format": "json", "media_type": "application/json", "bytes": 900},
        f"sheet.{SPEC_ID}": {
            "url": sheet_url,
            "format": "jpeg",
            "media_type": "image/jpeg",
            "bytes": 1000,
            "width": 1800,
            "height": 1200,
        },
    }
    summary = {
        "spec_id": SPEC_ID,
        "passed": passed,
        "failed_rules": [] if passed else ["head_height"],
        "width_px": spec.width_px,
        "height_px": spec.height_px,
        "dpi": 300.0,
        "file_bytes": len(photo),
        "jpeg_quality": 88,
        "sheet_count": 6,
    }
    job = {"id": "job-1", "status": "succeeded", "results": results, "id_photos": [summary]}
    return FakeIdApi(
        poll_answers=[(200, job, {})],
        files={
            "/bucket/job-1/id_photo.jpg": ("image/jpeg", photo),
            "/bucket/job-1/sheet.jpg": ("image/jpeg", _jpeg((1800, 1200), (250, 250, 250))),
            "/files/job-1/report.json": ("application/json", json.dumps(_report(SPEC_ID, passed=passed)).encode()),
        },
    )


def _choose_photo(page: Page, tmp_path: Path) -> None:
    page.set_input_files("#photo", str(demo_tests.photo_png(tmp_path / "portrait.png")))
    page.wait_for_function("() => document.getElementById('original').naturalWidth > 0")


def test_no_face_gets_its_title_and_the_options_reach_the_api(
    page_and_log: tuple[Page, PageLog], tmp_path: Path
) -> None:
    page, log = page_and_log
    api = _failed("no_face")
    api.install(page)
    page.goto(f"{FAKE_ORIGIN}/")
    assert api.api_requests() == [], "the background mode asks the API for nothing before a submission"
    open_id_mode(page)
    assert page.url.endswith("#id-photo")
    page.select_option("#id-spec", "us-visa")
    assert page.eval_on_selector_all("#id-backgrounds input", "inputs => inputs.map(i => i.value)") == [
        "",
        "white",
        "off-white",
    ]
    assert "up to 240 KB" in (page.text_content("#id-spec-details") or "")
    page.click("[data-testid=id-background-off-white]")
    page.fill("#id-max-kb", "200")
    _choose_photo(page, tmp_path)
    page.click("#submit")
    page.wait_for_selector("#error", state="visible")

    assert page.text_content("#error-title") == "No face found"
    assert "face" in (page.text_content("#error-message") or "")
    assert page.text_content("#error-code") == "no_face"
    assert page.text_content("#error-server-message") == "the worker said no_face"
    assert page.get_attribute("#status", "data-state") == "failed"
    assert page.is_hidden("#id-frame") and page.is_enabled("#submit")
    posts = [entry for entry in api.api_requests() if entry[1] == "POST"]
    assert len(posts) == 1
    body = posts[0][4]
    assert form_field(body, "id_spec") == "us-visa"
    assert form_field(body, "background") == "off-white"
    assert form_field(body, "max_kb") == "200"
    assert form_field(body, "matte_source") is None, "the network finds the person unless the box is ticked"
    assert form_field(body, "sheet") is None

    # The background mode is as it was; its choices are sent again, not the ID photo's.
    page.click("[data-testid=mode-background]")
    assert page.is_visible("#background-options") and page.is_hidden("#id-options")
    assert page.text_content("#submit") == "Replace background" and page.is_hidden("#error")
    assert not page.url.endswith("#id-photo")
    page.click("[data-background=green]")
    page.click("#submit")
    page.wait_for_selector("#error", state="visible")
    posts = [entry for entry in api.api_requests() if entry[1] == "POST"]
    assert len(posts) == 2
    assert form_field(posts[1][4], "background") == "green"
    assert form_field(posts[1][4], "id_spec") is None and form_field(posts[1][4], "max_kb") is None
    assert not log.errors, log.errors
    assert not log.csp_violations(), log.csp_violations()


def test_the_documents_load_once_the_api_key_is_given(page_and_log: tuple[Page, PageLog]) -> None:
    page, log = page_and_log
    api = FakeIdApi(poll_answers=[(200, {}, {})], specs_need_key="secret-key")
    api.install(page)
    page.goto(f"{FAKE_ORIGIN}/")
    page.click("[data-testid=mode-id-photo]")
    page.wait_for_selector("#error", state="visible")
    assert page.text_content("#error-title") == "An API key is needed"
    assert page.is_disabled("#id-spec")
    assert page.evaluate("document.getElementById('api-key-box').open")
    page.fill("#api-key", "secret-key")
    page.press("#api-key", "Tab")  # the change event
    page.wait_for_selector("#id-spec:enabled")
    assert page.is_hidden("#error")
    assert page.input_value("#id-spec") == "icao-35x45", "the catalogue's first document is chosen"
    loads = [headers.get("authorization") for _, _, path, headers, _ in api.api_requests() if path == "/v1/id-specs"]
    assert loads == [None, "Bearer secret-key"]
    assert not log.errors, log.errors


@pytest.mark.parametrize("code", ID_ERROR_CODES)
def test_every_id_photo_refusal_has_a_title_of_its_own(
    page_and_log: tuple[Page, PageLog], tmp_path: Path, code: str
) -> None:
    page, log = page_and_log
    _failed(code).install(page)
    page.goto(f"{FAKE_ORIGIN}/#id-photo")
    page.wait_for_selector("#id-spec:enabled")
    _choose_photo(page, tmp_path)
    page.click("#submit")
    page.wait_for_selector("#error", state="visible")
    title = page.text_content("#error-title") or ""
    assert title and title != UNKNOWN_ERROR_TITLE, (code, title)
    assert page.text_content("#error-code") == code
    assert (page.text_content("#error-message") or "").strip()
    assert not log.errors, log.errors


def test_a_wrong_size_limit_is_refused_by_the_page(page_and_log: tuple[Page, PageLog], tmp_path: Path) -> None:
    page, log = page_and_log
    api = _failed("no_face")
    api.install(page)
    page.goto(f"{FAKE_ORIGIN}/#id-photo")
    page.wait_for_selector("#id-spec:enabled")
    _choose_photo(page, tmp_path)
    page.fill("#id-max-kb", "-5")
    page.click("#submit")
    assert page.text_content("#error-title") == "The file size is not a number"
    assert [entry for entry in api.api_requests() if entry[1] == "POST"] == []
    assert not log.errors, log.errors


def test_on_a_phone_the_id_photo_view_fits_without_sideways_scrolling(
    phone_page_and_log: tuple[Page, PageLog], tmp_path: Path
) -> None:
    page, log = phone_page_and_log
    _succeeded_id_photo(report_origin=FAKE_ORIGIN).install(page)
    page.goto(f"{FAKE_ORIGIN}/#id-photo")
    page.wait_for_selector("#id-spec:enabled")
    overflow = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    assert page.evaluate(overflow) <= 0, "the form overflows"
    page.select_option("#id-spec", SPEC_ID)
    page.select_option("#id-sheet", "4x6")
    _choose_photo(page, tmp_path)
    page.click("#submit")
    wait_for_id_photo(page, timeout=30_000)
    page.wait_for_function("() => document.getElementById('id-sheet-image').naturalWidth > 0")

    assert page.evaluate(overflow) <= 0, "the result overflows"
    widest = page.evaluate(
        """() => Math.max(...Array.from(document.querySelectorAll("main *"))
          .filter((element) => element.getClientRects().length > 0 && !element.closest(".visually-hidden"))
          .map((element) => element.getBoundingClientRect().right))"""
    )
    assert widest <= PHONE["width"], widest
    box = page.locator("#id-photo").bounding_box()
    assert box is not None and abs(box["width"] / box["height"] - 413 / 531) < 0.01, box
    page.wait_for_function(
        """() => {
          const box = document.getElementById('id-frame').getBoundingClientRect();
          return box.top >= 0 && box.top < window.innerHeight;
        }"""
    )
    checklist = page.evaluate(CHECKLIST_JS)
    assert [(item["rule"], item["status"]) for item in checklist] == [
        ("head_height", "pass"),
        ("background_colour", "pass"),
        ("file_size", "pass"),
    ]
    values = {item["rule"]: item["values"] for item in checklist}
    assert values["background_colour"] == "Light grey; allowed: one of White, Off-white, Light grey, Light blue"
    assert values["file_size"] == "48 KB; allowed: at most 60 KB"
    assert "75 % of the height (33.8 mm)" in values["head_height"], values["head_height"]
    alt = page.get_attribute("#id-photo", "alt") or ""
    assert "crown 8 % " in alt and "eye line 50 %" in alt and "chin 17 %" in alt, "the guides' measures, in words"
    assert "6 photos" in (page.text_content("#id-sheet-info") or "")
    assert page.get_attribute("#id-download-sheet", "href") == f"{FAKE_RESULTS_ORIGIN}/bucket/job-1/sheet.jpg"
    screenshots = os.environ.get(SCREENSHOTS_ENV)
    if screenshots:
        Path(screenshots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(screenshots) / "demo-id-photo-phone.png"), full_page=True)
    assert not log.errors, log.errors
    assert not log.csp_violations(), log.csp_violations()


def test_a_report_the_page_cannot_read_still_gives_the_verdict(
    page_and_log: tuple[Page, PageLog], tmp_path: Path
) -> None:
    page, log = page_and_log
    # The report lies on another origin, which the page's Content-Security-Policy does not let it read.
    _succeeded_id_photo(report_origin=FAKE_RESULTS_ORIGIN, passed=False).install(page)
    page.goto(f"{FAKE_ORIGIN}/#id-photo")
    page.wait_for_selector("#id-spec:enabled")
    _choose_photo(page, tmp_path)
    page.click("#submit")
    wait_for_id_photo(page, timeout=30_000)

    assert page.is_visible("#id-report-note")
    assert page.get_attribute("#id-verdict", "data-passed") == "false"
    assert [(item["rule"], item["status"]) for item in page.evaluate(CHECKLIST_JS)] == [("head_height", "fail")]
    assert page.get_attribute("#id-download-report", "href") == f"{FAKE_RESULTS_ORIGIN}/files/job-1/report.json"
    assert page.locator("#id-guides line").count() == 0, "no guide lines without the measures"
    assert not log.errors, log.errors
