"""ID photos end to end through the service: a cut-out portrait to compliant photos, reports and sheets."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.id_specs import colour_names, get_spec
from tests.integration.stack import Stack


@pytest.fixture(scope="module")
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    stack = stack_factory("local")
    stack.start_worker(concurrency=2)
    stack.start_api()
    return stack


def _crown_row(rgb: np.ndarray, background: tuple[int, int, int]) -> int:
    """The first row (from the top) whose middle half differs clearly from the background: the crown."""
    width = rgb.shape[1]
    middle = rgb[:, width // 4 : 3 * width // 4].astype(np.int16)
    distance = np.abs(middle - np.array(background, np.int16)).max(axis=2)
    rows = np.flatnonzero((distance > 40).mean(axis=1) > 0.02)
    return int(rows[0])


def test_a_cut_out_portrait_to_two_specs_with_reports_and_sheets(stack: Stack, face_fixtures: Path) -> None:
    data = (face_fixtures / "test2.cutout.png").read_bytes()
    response = stack.submit(
        data, "test2.cutout.png", id_spec="icao-35x45,us-visa", matte_source="alpha", sheet="4x6", max_kb="240"
    )
    assert response.status == 202, response.body
    job = stack.wait_for(response.json()["id"])
    assert job["status"] == "succeeded", job
    assert [summary["spec_id"] for summary in job["id_photos"]] == ["icao-35x45", "us-visa"]
    for summary in job["id_photos"]:
        spec = get_spec(summary["spec_id"])
        results = job["results"]
        photo = Image.open(io.BytesIO(stack.download(results[f"id_photo.{spec.id}"]["url"]).body))
        assert photo.format == "JPEG" and photo.size == (spec.width_px, spec.height_px)
        assert tuple(round(v) for v in photo.info["dpi"]) == (round(spec.dpi), round(spec.dpi))
        report = json.loads(stack.download(results[f"report.{spec.id}"]["url"]).body)
        assert report["passed"] and summary["passed"] and summary["failed_rules"] == []
        assert report["file_bytes"] == results[f"id_photo.{spec.id}"]["bytes"] <= 240 * 1000
        checked = {rule["rule"]: rule for rule in report["rules"]}
        assert checked["head_height"]["status"] == "pass"
        low, high = checked["head_height"]["allowed"]["min"], checked["head_height"]["allowed"]["max"]
        assert low <= report["head_height_ratio"] <= high
        crown = _crown_row(np.asarray(photo.convert("RGB")), colour_names()[report["background_name"]])
        assert abs(crown / spec.height_px - report["crown_margin_ratio"]) <= 0.02
        sheet = Image.open(io.BytesIO(stack.download(results[f"sheet.{spec.id}"]["url"]).body))
        assert sheet.size == (results[f"sheet.{spec.id}"]["width"], results[f"sheet.{spec.id}"]["height"])
        assert summary["sheet_count"] >= 2
    assert job["options"]["id_spec"] == ["icao-35x45", "us-visa"] and job["options"]["background"] == "auto"


def test_a_photo_without_a_face_fails_with_no_face(stack: Stack) -> None:
    rgba = np.zeros((400, 300, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[100:400, 80:220, 3] = 255  # a "person" with no face
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, "PNG")
    response = stack.submit(buffer.getvalue(), id_spec="icao-35x45", matte_source="alpha")
    job = stack.wait_for(response.json()["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "no_face", job
    assert all(worker.alive() for worker in stack.workers)


def test_id_specs_are_listed(stack: Stack) -> None:
    response = stack.request("GET", "/v1/id-specs")
    assert response.status == 200
    specs = {spec["id"]: spec for spec in response.json()["specs"]}
    assert specs["icao-35x45"]["width_px"] == 413 and specs["icao-35x45"]["height_px"] == 531
    assert specs["us-passport"]["width_px"] == 600 and "cn-chsi" in specs
