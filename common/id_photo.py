"""ID photos: from a decoded photo, its matte and its faces to the spec's photo, report and print sheet.

``make_id_photos`` frames one photo for several specs at once (the face analysis and the crown are
measured once); ``make_id_photo`` is the one-spec form. The matte is the network's or, with
``matte_source=alpha``, the photo's own transparency (``matte_from_alpha``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from common.backgrounds import BackgroundKind, BackgroundSpec, parse_background, render_background
from common.compositing import composite, estimate_foreground
from common.errors import FileSizeUnreachable, InvalidOption, NoAlphaChannel
from common.faces import Face, select_face
from common.file_size import DEFAULT_QUALITY, MIN_QUALITY, encode_jpeg_within, max_bytes, min_bytes
from common.framing import (
    MAX_UPSCALE,
    TILT_THRESHOLD_DEGREES,
    FrameMeasures,
    FramePlan,
    HeadGeometry,
    analyse_head,
    as_matte,
    measure_frame,
    plan_frame,
    render_frame,
)
from common.id_report import (
    CENTRE_TOLERANCE,
    MIN_BACKGROUND_UNIFORMITY,
    RATIO_UNIT,
    Centre,
    Crop,
    IdPhotoReport,
    RuleCheck,
    choice_check,
    range_check,
)
from common.id_specs import Basis, Bounds, IdSpec, Measure, colour_names
from common.imaging import DecodedImage, encode_image
from common.print_sheets import encode_sheet, render_sheet

OutputFormat = Literal["jpeg", "png"]
MEDIA_TYPES: dict[str, str] = {"jpeg": "image/jpeg", "png": "image/png"}
# A background colour counts as a named one when every channel is within this of the name's rendering.
COLOUR_TOLERANCE = 6
# Background uniformity is measured away from the person: outside the matte dilated by this share of the width.
UNIFORMITY_CLEARANCE = 0.03


@dataclass(frozen=True, eq=False)
class IdPhotoResult:
    spec: IdSpec
    photo: bytes
    media_type: str
    report: IdPhotoReport
    rgb: np.ndarray  # the photo as composited, uint8 (H, W, 3)
    matte: np.ndarray  # the matte in the photo's frame, float32 (H, W)
    sheet: bytes | None = None
    sheet_count: int | None = None
    sheet_size: tuple[int, int] | None = None  # (width, height) px


def matte_from_alpha(decoded: DecodedImage) -> np.ndarray:
    """The photo's own transparency as the matte (``matte_source=alpha``); ``NoAlphaChannel`` without one."""
    if decoded.alpha is None:
        raise NoAlphaChannel(
            "matte_source=alpha needs an image with transparency (e.g. an RGBA PNG); this one has none"
        )
    return decoded.alpha


def _resolve_background(
    background: BackgroundSpec | str | None, spec: IdSpec
) -> tuple[tuple[int, int, int], str | None]:
    """(RGB, name) of the photo's background: the given colour, or the spec's first allowed one."""
    names = colour_names()
    if background is None:
        if not spec.backgrounds:
            return names["white"], "white"
        name = spec.backgrounds[0]
        return names[name], name
    if isinstance(background, str):
        key = background.strip().lower()
        if key in names:
            return names[key], key
        background = parse_background(background)
    if background.kind is not BackgroundKind.COLOR or background.color is None:
        raise InvalidOption(f"an ID photo needs a plain colour background, not {background.kind.value!r}")
    rgb = background.color
    return rgb, _colour_name(rgb, names)


def _colour_name(rgb: tuple[int, int, int], names: dict[str, tuple[int, int, int]]) -> str | None:
    for name, value in names.items():
        if all(abs(a - b) <= COLOUR_TOLERANCE for a, b in zip(rgb, value, strict=True)):
            return name
    return None


def background_uniformity(photo: np.ndarray, alpha: np.ndarray, colour: tuple[int, int, int]) -> float:
    """1 minus the mean deviation from ``colour`` (max over channels, / 255) of the background away from
    the person; 1.0 is a perfectly plain background. Matte residue (half-kept old background) lowers it."""
    width = photo.shape[1]
    size = max(3, round(UNIFORMITY_CLEARANCE * width) | 1)
    person = (alpha > 0.5).astype(np.uint8)
    near = cv2.dilate(person, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))) > 0
    zone = ~near
    if not np.any(zone):
        return 1.0
    deviation = np.abs(photo[zone].astype(np.int16) - np.array(colour, dtype=np.int16)).max(axis=1)
    return float(1.0 - deviation.mean() / 255.0)


def _size_limits(spec: IdSpec, max_kb: float | None, min_kb: float | None) -> tuple[float | None, float | None]:
    """The tighter of the user's and the spec's limits."""
    rules = spec.file
    spec_max = rules.max_kb if rules else None
    spec_min = rules.min_kb if rules else None
    limits_max = [v for v in (max_kb, spec_max) if v is not None]
    limits_min = [v for v in (min_kb, spec_min) if v is not None]
    return (min(limits_max) if limits_max else None), (max(limits_min) if limits_min else None)


def _encode(
    rgb: np.ndarray,
    spec: IdSpec,
    fmt: OutputFormat,
    *,
    quality: int,
    max_kb: float | None,
    min_kb: float | None,
    min_quality: int,
) -> tuple[bytes, int | None]:
    dpi = (spec.dpi, spec.dpi)
    if fmt == "jpeg":
        sized = encode_jpeg_within(rgb, dpi=dpi, max_kb=max_kb, min_kb=min_kb, quality=quality, min_quality=min_quality)
        return sized.data, sized.quality
    data = encode_image(rgb, "png", dpi=dpi)
    if (max_kb is not None and len(data) > max_bytes(max_kb)) or (min_kb is not None and len(data) < min_bytes(min_kb)):
        raise FileSizeUnreachable(
            f"the PNG is {len(data)} bytes, outside the asked size limits; PNG has no quality to trade, use JPEG"
        )
    return data, None


def _geometry_checks(spec: IdSpec, measures: FrameMeasures) -> list[RuleCheck]:
    checks = []
    for measure in Measure:
        bounds = spec.bounds(measure)
        basis = spec.basis(measure)
        if bounds is None or basis is None:
            continue
        checks.append(
            range_check(
                measure.value,
                measures.value(measure),
                bounds,
                unit=RATIO_UNIT,
                basis=basis,
                sources=spec.sources(measure),
            )
        )
    return checks


def _build_report(
    *,
    spec: IdSpec,
    head: HeadGeometry,
    plan: FramePlan,
    measures: FrameMeasures,
    colour: tuple[int, int, int],
    colour_name: str | None,
    uniformity: float,
    fmt: OutputFormat,
    data: bytes,
    quality: int | None,
    limits: tuple[float | None, float | None],
    tilt_threshold: float,
    max_upscale: float,
) -> IdPhotoReport:
    checks = _geometry_checks(spec, measures)
    checks.append(
        range_check(
            "face_centred",
            measures.horizontal_offset,
            Bounds(min=-CENTRE_TOLERANCE, max=CENTRE_TOLERANCE),
            unit="ratio of the photo width",
            basis="backdrop",
            sources=["the rules ask for a centred head"],
        )
    )
    checks.append(
        range_check(
            "eyes_level",
            measures.residual_tilt_degrees,
            Bounds(min=-tilt_threshold, max=tilt_threshold),
            unit="degrees",
            basis="backdrop",
            sources=["the rules ask for a level, frontal head"],
        )
    )
    if spec.backgrounds:
        checks.append(
            choice_check(
                "background_colour",
                colour_name or _hex(colour),
                list(spec.backgrounds),
                passed=colour_name in spec.backgrounds,
                basis=Basis.OFFICIAL,
                sources=[spec.background_source] if spec.background_source else [],
            )
        )
    checks.append(
        range_check(
            "background_uniform",
            uniformity,
            Bounds(min=MIN_BACKGROUND_UNIFORMITY, max=1.0),
            unit="1 - mean deviation",
            basis="backdrop",
            sources=["the rules ask for a plain background"],
        )
    )
    checks.append(
        range_check(
            "resolution",
            plan.scale,
            Bounds(max=max_upscale),
            unit="upscale factor",
            basis="backdrop",
            sources=["enlarging the source more than this loses the detail the rules ask for"],
        )
    )
    max_kb, min_kb = limits
    if max_kb is not None or min_kb is not None:
        allowed = Bounds(
            min=None if min_kb is None else float(min_bytes(min_kb)),
            max=None if max_kb is None else float(max_bytes(max_kb)),
        )
        source = [spec.file.source] if spec.file else ["the size asked for"]
        checks.append(
            range_check("file_size", float(len(data)), allowed, unit="bytes", basis=Basis.OFFICIAL, sources=source)
        )
    if spec.file is not None:
        checks.append(
            choice_check(
                "file_format",
                fmt,
                [spec.file.format],
                passed=fmt == spec.file.format,
                basis=Basis.OFFICIAL,
                sources=[spec.file.source],
            )
        )
    left, top, right, bottom = plan.crop
    width, height = plan.size
    return IdPhotoReport(
        spec_id=spec.id,
        spec_name=spec.name_en,
        crop=Crop(left=round(left, 2), top=round(top, 2), right=round(right, 2), bottom=round(bottom, 2)),
        rotation_degrees=round(plan.rotation_degrees, 4),
        rotation_center=Centre(x=round(plan.centre.x, 2), y=round(plan.centre.y, 2)),
        tilt_degrees=round(head.tilt_degrees, 4),
        residual_tilt_degrees=round(measures.residual_tilt_degrees, 4),
        head_height_ratio=round(measures.head_height, 6),
        head_height_mm=round(measures.head_height * spec.print_size_mm[1], 3),
        eye_line_ratio=round(measures.eye_line, 6),
        crown_margin_ratio=round(measures.crown_margin, 6),
        chin_margin_ratio=round(measures.chin_margin, 6),
        horizontal_offset_ratio=round(measures.horizontal_offset, 6),
        background=_hex(colour),
        background_name=colour_name,
        background_uniformity=round(uniformity, 6),
        width_px=width,
        height_px=height,
        dpi=spec.dpi,
        format=fmt,
        file_bytes=len(data),
        jpeg_quality=quality,
        upscale_factor=round(plan.scale, 4),
        rules_relaxed=list(plan.rules_relaxed),
        rules=checks,
        passed=all(c.passed for c in checks),
    )


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def make_id_photos(
    decoded: DecodedImage,
    matte: np.ndarray,
    faces: Sequence[Face],
    specs: Sequence[IdSpec],
    background: BackgroundSpec | str | None = None,
    *,
    output_format: OutputFormat = "jpeg",
    quality: int = DEFAULT_QUALITY,
    max_kb: float | None = None,
    min_kb: float | None = None,
    min_quality: int = MIN_QUALITY,
    sheet: str | None = None,
    cut_guides: bool = True,
    tilt_threshold: float = TILT_THRESHOLD_DEGREES,
    max_upscale: float = MAX_UPSCALE,
) -> list[IdPhotoResult]:
    """One ID photo (with report, and sheet when ``sheet`` names a paper) per spec, from one photo.

    ``matte`` is (H, W) in [0, 1] at the photo's size; ``faces`` are the detector's. ``background``
    None takes each spec's first allowed colour. ``max_kb``/``min_kb`` combine with the spec's own
    file limits (the tighter wins). Refusals raise the errors of ``common.id_errors``.
    """
    if output_format not in MEDIA_TYPES:
        raise InvalidOption(f"an ID photo is JPEG or PNG, not {output_format!r}")
    if not specs:
        raise InvalidOption("no ID-photo spec was given")
    alpha = as_matte(matte, (decoded.width, decoded.height))
    face = select_face(faces)
    head = analyse_head(alpha, face, tilt_threshold=tilt_threshold)
    results = []
    for spec in specs:
        plan = plan_frame(head, spec, max_upscale=max_upscale)
        frame_rgb, frame_alpha = render_frame(decoded.rgb, alpha, plan)
        colour, colour_name = _resolve_background(background, spec)
        backdrop = render_background(BackgroundSpec(BackgroundKind.COLOR, color=colour), size=plan.size)
        photo = composite(estimate_foreground(frame_rgb, frame_alpha), frame_alpha, backdrop)
        measures = measure_frame(frame_alpha, head, plan)
        uniformity = background_uniformity(photo, frame_alpha, colour)
        limits = _size_limits(spec, max_kb, min_kb)
        data, used_quality = _encode(
            photo, spec, output_format, quality=quality, max_kb=limits[0], min_kb=limits[1], min_quality=min_quality
        )
        report = _build_report(
            spec=spec,
            head=head,
            plan=plan,
            measures=measures,
            colour=colour,
            colour_name=colour_name,
            uniformity=uniformity,
            fmt=output_format,
            data=data,
            quality=used_quality,
            limits=limits,
            tilt_threshold=tilt_threshold,
            max_upscale=max_upscale,
        )
        sheet_bytes, sheet_count, sheet_size = None, None, None
        if sheet is not None:
            rendered = render_sheet(photo, spec.print_size_mm, sheet, cut_guides=cut_guides)
            sheet_bytes, sheet_count, sheet_size = encode_sheet(rendered), rendered.count, rendered.layout.sheet_size
        results.append(
            IdPhotoResult(
                spec=spec,
                photo=data,
                media_type=MEDIA_TYPES[output_format],
                report=report,
                rgb=photo,
                matte=frame_alpha,
                sheet=sheet_bytes,
                sheet_count=sheet_count,
                sheet_size=sheet_size,
            )
        )
    return results


def make_id_photo(
    decoded: DecodedImage,
    matte: np.ndarray,
    faces: Sequence[Face],
    spec: IdSpec,
    background: BackgroundSpec | str | None = None,
    **options: object,
) -> IdPhotoResult:
    """The ID photo of one spec; the options are those of ``make_id_photos``."""
    return make_id_photos(decoded, matte, faces, [spec], background, **options)[0]  # type: ignore[arg-type]
