"""The reduced-precision self-check: the user's own weights in fp32 and in the faster precision, on
the calibration portraits, at the largest usual network input size.

The faster precision is kept only when both the mean and the 99th percentile of |Δα| (the worst
portrait's) are under half the tolerance: across 20 inputs the worst difference reached 1.45x the
calibration figure, so half leaves room for photos the check never saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from worker.engines.base import Engine, Precision

DEFAULT_TOLERANCE = 2e-2


@dataclass(frozen=True)
class PrecisionCheck:
    """The figures of one self-check and its verdict."""

    precision: Precision  # the faster precision that was tried
    mean: float  # mean |Δα|, worst portrait
    p99: float  # 99th percentile of |Δα|, worst portrait
    tolerance: float
    images: int
    size: tuple[int, int]

    @property
    def bound(self) -> float:
        return self.tolerance / 2

    @property
    def passed(self) -> bool:
        return self.mean < self.bound and self.p99 < self.bound

    def summary(self) -> str:
        verdict = "passed" if self.passed else "failed"
        return (
            f"{self.precision.value} {verdict}: mean |Δα| {self.mean:.2e}, p99 {self.p99:.2e} "
            f"(bound {self.bound:.2e}, half of {self.tolerance:.2e}) on {self.images} calibration portraits "
            f"at {self.size[0]}x{self.size[1]}"
        )


def matte_difference(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(mean, 99th percentile) of |Δα| between two mattes, both clipped to [0, 1] as the pipeline does."""
    delta = np.abs(np.clip(reference, 0, 1) - np.clip(candidate, 0, 1))
    return float(delta.mean()), float(np.percentile(delta, 99))


def check_precision(
    reference: Engine, candidate: Engine, images: Sequence[np.ndarray], tolerance: float = DEFAULT_TOLERANCE
) -> PrecisionCheck:
    """Run each image through both engines, one at a time, and compare."""
    if not images:
        raise ValueError("the self-check needs at least one image")
    means, p99s = [], []
    for image in images:
        (expected,) = reference.predict([image])
        (actual,) = candidate.predict([image])
        mean, p99 = matte_difference(expected, actual)
        means.append(mean)
        p99s.append(p99)
    height, width = images[0].shape[:2]
    return PrecisionCheck(candidate.precision, max(means), max(p99s), tolerance, len(images), (height, width))
