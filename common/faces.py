"""Faces as the detector reports them, and the choice of the one face an ID photo is made of.

The detector itself runs in the worker (``worker.faces``); this module is what framing needs of it,
free of any inference runtime, so that framing is testable with synthetic faces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from common.errors import MultipleFaces, NoFace

# A second face counts as "comparable" when its box is at least this share of the largest one's height:
# people far behind the subject are ignored, a second person beside the subject is not.
COMPARABLE_FACE_SIZE = 0.6


@dataclass(frozen=True)
class Point:
    x: float
    y: float


@dataclass(frozen=True)
class Face:
    """A detected face in image pixels (after EXIF orientation).

    ``box`` is (left, top, right, bottom); the landmarks are named by their side in the image, so
    ``left_eye`` is the eye with the smaller x (the subject's right eye).
    """

    box: tuple[float, float, float, float]
    score: float
    left_eye: Point
    right_eye: Point
    nose: Point
    mouth_left: Point
    mouth_right: Point

    def __post_init__(self) -> None:
        left, top, right, bottom = self.box
        values = (*self.box, self.score, *(c for p in self.landmarks for c in (p.x, p.y)))
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"face values must be finite: {self}")
        if right <= left or bottom <= top:
            raise ValueError(f"face box must have a positive size, got {self.box}")
        if self.left_eye.x > self.right_eye.x:
            # Normalise: the detector's order is by the subject's side, ours by the image's.
            left_eye, right_eye = self.right_eye, self.left_eye
            object.__setattr__(self, "left_eye", left_eye)
            object.__setattr__(self, "right_eye", right_eye)
        if self.mouth_left.x > self.mouth_right.x:
            mouth_left, mouth_right = self.mouth_right, self.mouth_left
            object.__setattr__(self, "mouth_left", mouth_left)
            object.__setattr__(self, "mouth_right", mouth_right)

    @property
    def landmarks(self) -> tuple[Point, Point, Point, Point, Point]:
        return self.left_eye, self.right_eye, self.nose, self.mouth_left, self.mouth_right

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def eye_midpoint(self) -> Point:
        return Point((self.left_eye.x + self.right_eye.x) / 2, (self.left_eye.y + self.right_eye.y) / 2)

    @property
    def mouth_midpoint(self) -> Point:
        return Point((self.mouth_left.x + self.mouth_right.x) / 2, (self.mouth_left.y + self.mouth_right.y) / 2)

    @property
    def tilt_degrees(self) -> float:
        """Angle of the eye line from the horizontal; positive when the right eye (in the image) is lower."""
        dx = self.right_eye.x - self.left_eye.x
        dy = self.right_eye.y - self.left_eye.y
        return math.degrees(math.atan2(dy, dx))


def select_face(faces: Sequence[Face]) -> Face:
    """The one face of the photo: ``NoFace`` if there is none, ``MultipleFaces`` if another face is of
    comparable size (at least ``COMPARABLE_FACE_SIZE`` of the largest one's height)."""
    if not faces:
        raise NoFace("no face was found in the photo")
    ordered = sorted(faces, key=lambda f: f.height, reverse=True)
    main = ordered[0]
    comparable = [f for f in ordered[1:] if f.height >= COMPARABLE_FACE_SIZE * main.height]
    if comparable:
        raise MultipleFaces(
            f"the photo shows {len(comparable) + 1} faces of comparable size; an ID photo shows one person"
        )
    return main
