"""End to end through the library, matte_source=alpha on test2.cutout.png: size, DPI, a passing report,
and the report's geometry re-measured on the output."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.framing import CHIN_FROM_MOUTH, MATTE_THRESHOLD
from common.id_photo import make_id_photos, matte_from_alpha
from common.id_report import IdPhotoReport
from common.id_specs import get_specs
from common.imaging import decode_image

pytest.importorskip("mtcnnruntime", reason="the worker extra (mtcnn-runtime, onnxruntime) is not installed")

from worker.faces import FaceDetector

SPECS = "icao-35x45,us-visa,cn-id-card,cn-1inch,cn-chsi"


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def results(face_fixtures: Path, detector: FaceDetector):
    decoded = decode_image(face_fixtures / "test2.cutout.png", max_pixels=50_000_000, min_side=16)
    faces = detector.detect(decoded.rgb)
    return make_id_photos(decoded, matte_from_alpha(decoded), faces, get_specs(SPECS), sheet="4x6")


def test_each_photo_has_the_exact_pixel_size_and_dpi(results) -> None:
    for result in results:
        with Image.open(io.BytesIO(result.photo)) as im:
            assert im.format == "JPEG"
            assert im.size == result.spec.pixel_size
            assert tuple(round(v) for v in im.info["dpi"]) == (round(result.spec.dpi),) * 2
        assert result.media_type == "image/jpeg"
        assert result.report.file_bytes == len(result.photo)


def test_each_report_passes_and_serialises(results) -> None:
    for result in results:
        report = result.report
        assert report.passed, [c for c in report.rules if not c.passed]
        again = IdPhotoReport.model_validate(json.loads(report.model_dump_json()))
        assert again == report
        assert report.jpeg_quality is not None and 1 <= report.jpeg_quality <= 100
        assert report.upscale_factor <= 2.0


def test_the_output_matte_agrees_with_the_report(results) -> None:
    for result in results:
        height, width = result.matte.shape
        band = result.matte[:, round(0.35 * width) : round(0.65 * width)] > MATTE_THRESHOLD
        crown = int(np.flatnonzero(band.sum(axis=1) >= 2)[0])
        assert abs(crown / height - result.report.crown_margin_ratio) <= 0.02
        # The head's width in the matte is centred on the frame.
        row = result.matte[min(height - 1, crown + round(0.15 * height))] > MATTE_THRESHOLD
        cols = np.flatnonzero(row)
        assert abs((cols.min() + cols.max()) / 2 / width - 0.5) <= 0.05


def test_the_output_photo_re_detected_agrees_with_the_report(results, detector: FaceDetector) -> None:
    for result in results:
        height = result.rgb.shape[0]
        faces = detector.detect(result.rgb)
        assert len(faces) == 1
        face = faces[0]
        eye_y = face.eye_midpoint.y
        mouth_y = face.mouth_midpoint.y
        chin = ((mouth_y + CHIN_FROM_MOUTH * (mouth_y - eye_y)) + face.box[3]) / 2
        band = result.matte[:, round(0.35 * result.matte.shape[1]) : round(0.65 * result.matte.shape[1])] > 0.5
        crown = int(np.flatnonzero(band.sum(axis=1) >= 2)[0])
        assert abs((1 - eye_y / height) - result.report.eye_line_ratio) <= 0.02
        assert abs((chin - crown) / height - result.report.head_height_ratio) <= 0.02
        assert abs(face.tilt_degrees - result.report.residual_tilt_degrees) <= 2.0


def test_each_spec_has_its_sheet(results) -> None:
    for result in results:
        assert result.sheet is not None and result.sheet_count and result.sheet_count > 0
        with Image.open(io.BytesIO(result.sheet)) as im:
            assert sorted(im.size) == [1200, 1800]
