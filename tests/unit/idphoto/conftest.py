"""Fixtures of the ID-photo tests: the portraits in ../shared/fixtures/faces and synthetic heads."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from common.faces import Face, Point
from common.framing import CHIN_FROM_MOUTH
from common.imaging import DecodedImage

SKIN = (224, 180, 150)
HAIR = (130, 90, 50)
SHIRT = (40, 70, 140)
OLD_BACKGROUND = (120, 160, 90)
EYE = (10, 10, 10)


@dataclass(frozen=True)
class Scene:
    """A synthetic portrait: the photo, its exact matte, its face, and the true crown and chin."""

    decoded: DecodedImage
    matte: np.ndarray
    face: Face
    crown: Point  # top of the head on the face's midline (levelled: the scene is drawn upright, then rotated)
    chin: Point
    tilt_degrees: float


def _rotate(point: tuple[float, float], centre: tuple[float, float], degrees: float) -> Point:
    """Rotate clockwise as displayed by ``degrees`` about ``centre`` (image y points down)."""
    a = math.radians(degrees)
    dx, dy = point[0] - centre[0], point[1] - centre[1]
    return Point(centre[0] + dx * math.cos(a) - dy * math.sin(a), centre[1] + dx * math.sin(a) + dy * math.cos(a))


def make_scene(
    *,
    size: tuple[int, int] = (900, 1200),
    centre_x: float = 450.0,
    eye_y: float = 500.0,
    eye_distance: float = 120.0,
    tilt_degrees: float = 0.0,
    body: bool = True,
) -> Scene:
    """An upright head (hair ellipse, face ellipse, dark eyes) on shoulders, then tilted by ``tilt_degrees``.

    Proportions: eye to mouth 0.9 eye distances, chin from the mouth by CHIN_FROM_MOUTH of that, crown
    1.45 eye distances above the eyes; the face box's bottom is at the chin, so the chin is exact.
    """
    width, height = size
    e = eye_distance
    mouth_y = eye_y + 0.9 * e
    chin_y = mouth_y + CHIN_FROM_MOUTH * (mouth_y - eye_y)
    crown_y = eye_y - 1.45 * e
    head_cy = (crown_y + chin_y) / 2
    head_axes = (round(1.05 * e), round((chin_y - crown_y) / 2))
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:] = OLD_BACKGROUND
    matte = np.zeros((height, width), np.float32)
    if body:
        top = round(chin_y - 0.2 * e)
        cv2.rectangle(rgb, (round(centre_x - 2.2 * e), top), (round(centre_x + 2.2 * e), height), SHIRT, -1)
        cv2.rectangle(matte, (round(centre_x - 2.2 * e), top), (round(centre_x + 2.2 * e), height), 1.0, -1)
        cv2.rectangle(rgb, (round(centre_x - 0.4 * e), round(head_cy)), (round(centre_x + 0.4 * e), top), SKIN, -1)
        cv2.rectangle(matte, (round(centre_x - 0.4 * e), round(head_cy)), (round(centre_x + 0.4 * e), top), 1.0, -1)
    centre = (round(centre_x), round(head_cy))
    cv2.ellipse(rgb, centre, head_axes, 0, 0, 360, HAIR, -1)
    cv2.ellipse(matte, centre, head_axes, 0, 0, 360, 1.0, -1)
    face_axes = (round(0.9 * e), round((chin_y - eye_y + 0.6 * e) / 2))
    cv2.ellipse(rgb, (round(centre_x), round(chin_y - face_axes[1])), face_axes, 0, 0, 360, SKIN, -1)
    for dx in (-e / 2, e / 2):
        cv2.circle(rgb, (round(centre_x + dx), round(eye_y)), max(3, round(0.08 * e)), EYE, -1)
    points = {
        "left_eye": (centre_x - e / 2, eye_y),
        "right_eye": (centre_x + e / 2, eye_y),
        "nose": (centre_x, eye_y + 0.5 * e),
        "mouth_left": (centre_x - 0.4 * e, mouth_y),
        "mouth_right": (centre_x + 0.4 * e, mouth_y),
    }
    box = (centre_x - 0.9 * e, eye_y - 0.7 * e, centre_x + 0.9 * e, chin_y)
    pivot = (centre_x, eye_y)
    if tilt_degrees:
        m = cv2.getRotationMatrix2D(pivot, -tilt_degrees, 1.0)  # cv2: positive is counter-clockwise
        rgb = cv2.warpAffine(rgb, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        matte = cv2.warpAffine(matte, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # Sensor-like noise, so that JPEG sizes behave as for a photo; it keeps every colour clear of the eyes'.
    noise = np.random.default_rng(7).normal(0.0, 3.0, rgb.shape)
    rgb = np.clip(rgb.astype(np.float64) + noise, 0, 255).astype(np.uint8)
    rotated = {k: _rotate(v, pivot, tilt_degrees) for k, v in points.items()}
    # The detector's box stays axis-aligned; its bottom centre is rotated with the head.
    bottom = _rotate(((box[0] + box[2]) / 2, box[3]), pivot, tilt_degrees)
    half_w = (box[2] - box[0]) / 2
    face_box = (bottom.x - half_w, box[1], bottom.x + half_w, bottom.y)
    face = Face(box=face_box, score=0.99, **rotated)
    decoded = DecodedImage(rgb=rgb, alpha=None, dpi=None, source_format="PNG")
    return Scene(
        decoded=decoded,
        matte=np.clip(matte, 0.0, 1.0),
        face=face,
        crown=Point(centre_x, crown_y - 0.5),
        chin=Point(centre_x, chin_y),
        tilt_degrees=tilt_degrees,
    )


@pytest.fixture
def scene() -> Scene:
    return make_scene()
