"""The face detector of the ID-photo mode: MTCNN (P-, R- and O-Net) from the ``mtcnn-runtime`` wheel.

Its three ONNX networks (about 2 MB, Apache-2.0) ship inside the package and load from it, so nothing
is downloaded at run time; onnxruntime runs them on the CPU. It gives a box, a score and five
landmarks (eyes, nose, mouth corners) per face, which is what framing needs (``common.faces.Face``).
Photos are shrunk to at most ``max_side`` pixels for detection and the results mapped back.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from common.faces import Face, Point

DETECT_MAX_SIDE = 1024  # detection runs on a copy no larger than this (faces in ID photos are large)
MIN_FACE_PX = 20  # at the detection size
MIN_SCORE = 0.9  # the O-Net's face probability below which a detection is dropped


class FaceDetector:
    """Loads the networks once; ``detect`` is safe to call from several threads."""

    def __init__(self, *, max_side: int = DETECT_MAX_SIDE, min_score: float = MIN_SCORE) -> None:
        from mtcnnruntime import MTCNN

        self._mtcnn = MTCNN()
        self._lock = threading.Lock()
        self.max_side = max_side
        self.min_score = min_score

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an (H, W, 3) uint8 RGB image, in its pixel coordinates, best score first."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
        height, width = rgb.shape[:2]
        factor = min(1.0, self.max_side / max(height, width))
        small = rgb
        if factor < 1.0:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(small[:, :, ::-1])  # the package expects OpenCV's BGR order
        with self._lock:
            try:
                boxes, landmarks = self._mtcnn.detect(bgr, min_face_size=float(MIN_FACE_PX))
            except ValueError:
                # The package's first stage stacks an empty list when no window looks like a face.
                return []
        faces = []
        for box, marks in zip(np.asarray(boxes).reshape(-1, 5), np.asarray(landmarks).reshape(-1, 10), strict=True):
            score = float(box[4])
            if score < self.min_score:
                continue
            x = [float(v) / factor for v in marks[:5]]
            y = [float(v) / factor for v in marks[5:]]
            faces.append(
                Face(
                    box=tuple(float(v) / factor for v in box[:4]),  # type: ignore[arg-type]
                    score=score,
                    left_eye=Point(x[0], y[0]),
                    right_eye=Point(x[1], y[1]),
                    nose=Point(x[2], y[2]),
                    mouth_left=Point(x[3], y[3]),
                    mouth_right=Point(x[4], y[4]),
                )
            )
        return sorted(faces, key=lambda f: f.score, reverse=True)
