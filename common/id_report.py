"""The compliance report of an ID photo: what was done to the photo, what was measured, and for each
rule of the spec whether the result passes, with the measured value and the allowed range.

Ratios are of the photo's height (the horizontal offset: of its width); ``crop`` is in source pixels
after EXIF orientation, in the frame rotated by ``rotation_degrees`` about ``rotation_center``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.id_specs import Basis, Bounds

REPORT_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Crop(_Model):
    left: float
    top: float
    right: float
    bottom: float


class Centre(_Model):
    x: float
    y: float


class Allowed(_Model):
    min: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, bounds: Bounds) -> Allowed:
        return cls(min=bounds.min, max=bounds.max)

    def contains(self, value: float, *, tolerance: float = 1e-9) -> bool:
        return Bounds(min=self.min, max=self.max).contains(value, tolerance=tolerance)


class RuleCheck(_Model):
    """One rule of the spec (or one of Backdrop's own checks) and how the photo fares."""

    rule: str
    status: Literal["pass", "fail"]
    measured: float | str
    allowed: Allowed | list[str]
    unit: str
    basis: Basis | Literal["backdrop"]
    sources: list[str] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "pass"


class IdPhotoReport(_Model):
    version: int = REPORT_VERSION
    spec_id: str
    spec_name: str
    crop: Crop
    rotation_degrees: float
    rotation_center: Centre
    tilt_degrees: float  # of the eye line in the source
    residual_tilt_degrees: float  # of the eye line in the photo
    head_height_ratio: float
    head_height_mm: float | None
    eye_line_ratio: float
    crown_margin_ratio: float
    chin_margin_ratio: float
    horizontal_offset_ratio: float
    background: str  # '#rrggbb'
    background_name: str | None
    background_uniformity: float
    width_px: int
    height_px: int
    dpi: float
    format: Literal["jpeg", "png"]
    file_bytes: int
    jpeg_quality: int | None
    upscale_factor: float
    rules_relaxed: list[str] = Field(default_factory=list)
    rules: list[RuleCheck]
    passed: bool

    def failures(self) -> list[RuleCheck]:
        return [r for r in self.rules if not r.passed]


# --- building the checks ---------------------------------------------------------------------------

RATIO_UNIT = "ratio of the photo height"
CENTRE_TOLERANCE = 0.02  # |horizontal offset| allowed, as a ratio of the width
MIN_BACKGROUND_UNIFORMITY = 0.98


def range_check(
    rule: str,
    measured: float,
    allowed: Bounds,
    *,
    unit: str,
    basis: Basis | Literal["backdrop"],
    sources: list[str] | None = None,
) -> RuleCheck:
    """A rule on a number: pass when ``measured`` lies in ``allowed`` (ends included)."""
    status: Literal["pass", "fail"] = "pass" if allowed.contains(measured) else "fail"
    return RuleCheck(
        rule=rule,
        status=status,
        measured=round(float(measured), 6),
        allowed=Allowed.of(allowed),
        unit=unit,
        basis=basis,
        sources=sources or [],
    )


def choice_check(
    rule: str,
    measured: str,
    allowed: list[str],
    *,
    passed: bool,
    basis: Basis | Literal["backdrop"],
    sources: list[str],
) -> RuleCheck:
    """A rule on a named choice (a colour, a format)."""
    return RuleCheck(
        rule=rule,
        status="pass" if passed else "fail",
        measured=measured,
        allowed=allowed,
        unit="name",
        basis=basis,
        sources=sources,
    )


class IdPhotoSummary(_Model):
    """One ID photo of a job, in the job record and its public JSON; the full report is a result."""

    spec_id: str
    passed: bool
    failed_rules: list[str]
    width_px: int
    height_px: int
    dpi: float
    file_bytes: int
    jpeg_quality: int | None
    sheet_count: int | None = Field(default=None, description="photos on the print sheet, when one was asked for")

    @classmethod
    def of(cls, report: IdPhotoReport, sheet_count: int | None) -> IdPhotoSummary:
        return cls(
            spec_id=report.spec_id,
            passed=report.passed,
            failed_rules=[check.rule for check in report.failures()],
            width_px=report.width_px,
            height_px=report.height_px,
            dpi=report.dpi,
            file_bytes=report.file_bytes,
            jpeg_quality=report.jpeg_quality,
            sheet_count=sheet_count,
        )
