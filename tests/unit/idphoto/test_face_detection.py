"""The MTCNN detector on the portrait fixtures: one face each, the eyes where they are."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from common.faces import select_face
from common.imaging import decode_image

pytest.importorskip("mtcnnruntime", reason="the worker extra (mtcnn-runtime, onnxruntime) is not installed")

from worker.faces import FaceDetector

# Pupil centres read off the photos by eye (image-left eye first), in upright pixels.
EYES = {
    "test1.jpg": ((341, 514), (468, 514)),
    "test2.jpg": ((282, 246), (373, 246)),
    "test2.cutout.png": ((282, 246), (373, 246)),
    "test4.jpg": ((451, 273), (531, 269)),
}
TOLERANCE = 0.1  # of the distance between the eyes


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def _decode(path: Path):
    return decode_image(path, max_pixels=50_000_000, min_side=16)


@pytest.mark.parametrize("name", list(EYES))
def test_one_face_with_the_eyes_where_they_are(face_fixtures: Path, detector: FaceDetector, name: str) -> None:
    decoded = _decode(face_fixtures / name)
    faces = detector.detect(decoded.rgb)
    assert len(faces) == 1
    face = select_face(faces)
    (lx, ly), (rx, ry) = EYES[name]
    distance = math.dist((lx, ly), (rx, ry))
    assert math.dist((face.left_eye.x, face.left_eye.y), (lx, ly)) <= TOLERANCE * distance
    assert math.dist((face.right_eye.x, face.right_eye.y), (rx, ry)) <= TOLERANCE * distance
    left, top, right, bottom = face.box
    assert left < face.left_eye.x < face.right_eye.x < right
    assert top < face.eye_midpoint.y < face.mouth_midpoint.y < bottom
    assert face.score >= 0.9


def test_a_large_photo_is_detected_on_a_smaller_copy_and_mapped_back(face_fixtures: Path, detector) -> None:
    decoded = _decode(face_fixtures / "test4.jpg")
    big = np.repeat(np.repeat(decoded.rgb, 2, axis=0), 2, axis=1)  # 1956x2028, above the detection size
    face = select_face(detector.detect(big))
    (lx, ly), _ = EYES["test4.jpg"]
    assert math.dist((face.left_eye.x, face.left_eye.y), (2 * lx, 2 * ly)) <= 2 * TOLERANCE * 80


def test_no_face_in_a_plain_image(detector: FaceDetector) -> None:
    assert detector.detect(np.full((400, 300, 3), 200, np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 255, (400, 300, 3), dtype=np.uint8)
    assert detector.detect(noise) == []


def test_the_model_ships_in_the_package() -> None:
    import mtcnnruntime

    weights = Path(mtcnnruntime.__file__).parent / "weights"
    assert sorted(p.name for p in weights.glob("*.onnx")) == ["onet.onnx", "pnet.onnx", "rnet.onnx"]
