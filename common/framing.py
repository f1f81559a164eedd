"""ID-photo geometry: level the eyes, find crown and chin, scale and place the head, cut the frame.

Three steps, so that several specs share the work on one photo:

``analyse_head(matte, face)``  the head in the *levelled* frame: source pixels (after EXIF orientation)
    rotated about the eye midpoint so that the eye line is horizontal (only when the tilt exceeds a
    threshold). The crown is the top of the person in the matte above the face, hair included, as the
    rules measure it; the chin is estimated from the landmarks and the face box.
``plan_frame(head, spec)``  the crop (in levelled source pixels) and scale that put chin-to-crown in the
    middle of the spec's range, the face on the vertical centre line, and the crown and eye line inside
    their ranges; refuses a frame that needs more upscaling than allowed.
``render_frame(rgb, matte, plan)``  one resampling of the full-resolution original straight into the
    spec's pixel size (rotation, scale and crop in one affine warp, Lanczos, low-pass filtered first
    when shrinking). Where the frame reaches past the photo, the matte is 0, so the new background
    shows, except below the photo, where the person (shoulders) is continued downwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from common.compositing import to_float
from common.errors import FaceCutOff, MatteMismatch, ResolutionTooLow
from common.faces import Face, Point
from common.id_specs import Bounds, IdSpec, Measure

TILT_THRESHOLD_DEGREES = 1.0  # level the eye line when it is tilted by more than this
MAX_UPSCALE = 2.0  # refuse frames that need the source enlarged by more than this
# The chin lies below the mouth by this multiple of the eye-to-mouth distance (measured on the
# fixture portraits against the detector's box bottom: 391 vs 391, 393 vs 402, 745 vs 735 px).
CHIN_FROM_MOUTH = 0.62
MATTE_THRESHOLD = 0.5  # alpha above this is the person
# Where the head meets the photo's top edge a network's matte is often soft (0.3-0.5): above this, connected
# to the head, the head runs on past the edge.
EDGE_THRESHOLD = 0.25
# The crown is searched in columns within this multiple of the face box width either side of the
# face's midline, and is the first row where at least CROWN_MIN_SHARE of those columns are person.
CROWN_BAND = 0.5
CROWN_MIN_SHARE = 0.02
# Without a crown-margin or eye-line rule, the crown margin takes this share of the height the head
# leaves free (the rest is below the chin: neck and shoulders).
DEFAULT_CROWN_SHARE = 1 / 3
# Candidate head heights tried, from the middle of the spec's range outwards, when the middle leaves
# no crown position that meets every rule.
HEAD_STEPS = 20


@dataclass(frozen=True)
class HeadGeometry:
    """The head of one photo in the levelled frame (source pixels rotated about ``centre``)."""

    image_size: tuple[int, int]  # (width, height) of the source
    face: Face
    tilt_degrees: float  # of the eye line in the source
    rotation_degrees: float  # applied about ``centre`` (counter-clockwise as displayed); 0 below the threshold
    centre: Point  # the eye midpoint, in source pixels (the same point in the levelled frame)
    levelling: np.ndarray  # 2x3 affine: source -> levelled
    left_eye: Point
    right_eye: Point
    eye_y: float
    mid_x: float  # the face's vertical midline
    chin_y: float
    crown_y: float
    face_width: float

    @property
    def head_height(self) -> float:
        return self.chin_y - self.crown_y


@dataclass(frozen=True)
class FramePlan:
    """Where the spec's frame lies in the levelled source, and how it maps to output pixels."""

    spec_id: str
    size: tuple[int, int]  # output (width, height)
    scale: float  # output pixels per source pixel (the upscale factor when above 1)
    crop: tuple[float, float, float, float]  # (left, top, right, bottom) in levelled source pixels
    rotation_degrees: float
    centre: Point
    matrix: np.ndarray  # 2x3 affine: source -> output
    planned_head_ratio: float
    planned_crown_margin: float
    rules_relaxed: tuple[str, ...]  # measures whose rules could not all be met together

    def to_output(self, point: Point) -> Point:
        """A point of the levelled frame in output pixels."""
        left, top = self.crop[0], self.crop[1]
        return Point((point.x - left) * self.scale, (point.y - top) * self.scale)


@dataclass(frozen=True)
class FrameMeasures:
    """The geometry of a rendered frame, as ratios of its height (offset: of its width)."""

    head_height: float
    crown_margin: float
    eye_line: float  # eye line to the bottom edge
    chin_margin: float
    horizontal_offset: float  # face midline minus the frame's centre line, signed
    residual_tilt_degrees: float
    crown_px: float
    chin_px: float
    eye_px: float

    def value(self, measure: Measure) -> float:
        return float(getattr(self, measure.value))


# --- analysis -------------------------------------------------------------------------------------


def _apply(matrix: np.ndarray, point: Point) -> Point:
    x = matrix[0, 0] * point.x + matrix[0, 1] * point.y + matrix[0, 2]
    y = matrix[1, 0] * point.x + matrix[1, 1] * point.y + matrix[1, 2]
    return Point(float(x), float(y))


def as_matte(matte: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A matte as float32 (H, W) in [0, 1] (uint8 is read as 0..255), checked against the image size."""
    a = to_float(np.asarray(matte))
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.shape != (size[1], size[0]):
        raise ValueError(f"matte shape {a.shape} does not match the image size {size[0]}x{size[1]}")
    return np.clip(a, 0.0, 1.0)


def find_crown(alpha: np.ndarray, x_lo: float, x_hi: float, y_end: float) -> int | None:
    """The first row, above ``y_end``, where enough columns of [x_lo, x_hi) are person; None if none."""
    height, width = alpha.shape
    c0, c1 = max(0, math.floor(x_lo)), min(width, math.ceil(x_hi))
    r1 = min(height, math.ceil(y_end))
    if c1 <= c0 or r1 <= 0:
        return None
    counts = np.count_nonzero(alpha[:r1, c0:c1] > MATTE_THRESHOLD, axis=1)
    rows = np.flatnonzero(counts >= _columns_needed(c0, c1))
    return int(rows[0]) if rows.size else None


def _columns_needed(c0: int, c1: int) -> int:
    """How many of the band's columns [c0, c1) make a row of the head: CROWN_MIN_SHARE, at least 2."""
    return max(2, math.ceil(CROWN_MIN_SHARE * (c1 - c0)))


def _nose_radius(face_width: float) -> int:
    """The half-size of the patch around the nose that must be person (and seeds the head's region)."""
    return max(1, round(0.05 * face_width))


def head_region(alpha: np.ndarray, seed: Point, radius: int, threshold: float = MATTE_THRESHOLD) -> np.ndarray:
    """The rows of ``alpha`` down to ``seed``'s patch, where it is above ``threshold`` and joined
    (8-neighbours) to the person at ``seed``, zero elsewhere: a speck of matte apart from the head (a
    stray blob, another person behind) is not its crown. The seed is the strongest pixel within
    ``radius`` of ``seed``; nothing is joined to a seed below the threshold."""
    alpha = alpha[: max(0, min(alpha.shape[0], math.ceil(seed.y) + radius + 1))]
    height, width = alpha.shape
    y0, y1 = max(0, round(seed.y) - radius), min(height, round(seed.y) + radius + 1)
    x0, x1 = max(0, round(seed.x) - radius), min(width, round(seed.x) + radius + 1)
    patch = alpha[y0:y1, x0:x1]
    if patch.size == 0 or float(patch.max()) <= threshold:
        return np.zeros_like(alpha)
    sy, sx = np.unravel_index(int(np.argmax(patch)), patch.shape)
    _, labels = cv2.connectedComponents((alpha > threshold).astype(np.uint8), connectivity=8)
    return np.where(labels == labels[y0 + sy, x0 + sx], alpha, 0.0).astype(alpha.dtype, copy=False)


def estimate_chin(face: Face, levelling: np.ndarray) -> float:
    """Chin height in the levelled frame: the mean of the landmark estimate and the face box's bottom."""
    eye = _apply(levelling, face.eye_midpoint)
    mouth = _apply(levelling, face.mouth_midpoint)
    from_landmarks = mouth.y + CHIN_FROM_MOUTH * (mouth.y - eye.y)
    box_bottom = _apply(levelling, Point((face.box[0] + face.box[2]) / 2, face.box[3]))
    return (from_landmarks + box_bottom.y) / 2


def _check_inside(face: Face, size: tuple[int, int]) -> None:
    width, height = size
    margin_x, margin_y = 0.02 * face.width, 0.02 * face.height
    left, top, right, bottom = face.box
    if left < -margin_x or top < -margin_y or right > width + margin_x or bottom > height + margin_y:
        raise FaceCutOff("the face is cut off by the edge of the photo")
    if not all(0 <= p.x < width and 0 <= p.y < height for p in face.landmarks):
        raise FaceCutOff("the face is cut off by the edge of the photo (a landmark lies outside it)")


def analyse_head(matte: np.ndarray, face: Face, *, tilt_threshold: float = TILT_THRESHOLD_DEGREES) -> HeadGeometry:
    """Measure the head of ``face`` in the levelled frame. ``matte`` is (H, W) in [0, 1] (or uint8).

    Raises ``FaceCutOff`` when the face or the top of the head touches the photo's edge and
    ``MatteMismatch`` when the matte does not cover the face.
    """
    height, width = matte.shape[:2]
    alpha = as_matte(matte, (width, height))
    _check_inside(face, (width, height))

    tilt = face.tilt_degrees
    rotation = tilt if abs(tilt) > tilt_threshold else 0.0
    centre = face.eye_midpoint
    levelling = cv2.getRotationMatrix2D((centre.x, centre.y), rotation, 1.0)

    nose = face.nose
    r = _nose_radius(face.width)
    patch = alpha[
        max(0, round(nose.y) - r) : min(height, round(nose.y) + r + 1),
        max(0, round(nose.x) - r) : min(width, round(nose.x) + r + 1),
    ]
    if patch.size == 0 or float(patch.mean()) < MATTE_THRESHOLD:
        raise MatteMismatch("the matte does not cover the detected face")

    left_eye, right_eye = _apply(levelling, face.left_eye), _apply(levelling, face.right_eye)
    mouth = _apply(levelling, face.mouth_midpoint)
    mid_x = ((left_eye.x + right_eye.x) / 2 + mouth.x) / 2
    eye_y = centre.y
    chin_y = estimate_chin(face, levelling)
    chin_source = cv2.invertAffineTransform(levelling)
    chin_point = _apply(chin_source, Point(mid_x, chin_y))
    if chin_point.y >= height or not 0 <= chin_point.x < width:
        raise FaceCutOff("the chin is cut off by the edge of the photo")

    if rotation:
        levelled = cv2.warpAffine(alpha, levelling, (width, height), flags=cv2.INTER_LINEAR, borderValue=0.0)
        valid = cv2.warpAffine(np.ones_like(alpha), levelling, (width, height), flags=cv2.INTER_LINEAR, borderValue=0.0)
    else:
        levelled, valid = alpha, None
    half = CROWN_BAND * face.width
    # Only the head's own matte, above the nose (the region holds the seed), counts.
    levelled_nose = _apply(levelling, nose)
    head_alpha = head_region(levelled, levelled_nose, r)
    crown = find_crown(head_alpha, mid_x - half, mid_x + half, eye_y)
    if crown is None:
        raise MatteMismatch("the matte shows no head above the eyes")
    c0, c1 = max(0, math.floor(mid_x - half)), min(width, math.ceil(mid_x + half))
    at_crown = np.flatnonzero(head_alpha[crown, c0:c1] > MATTE_THRESHOLD) + c0
    needed = _columns_needed(c0, c1)
    # Soft matte joined to the head along the top edge; looked for only where the edge has enough of it.
    soft_at_edge = np.count_nonzero(levelled[0, c0:c1] > EDGE_THRESHOLD) >= needed and (
        np.count_nonzero(head_region(levelled, levelled_nose, r, EDGE_THRESHOLD)[0, c0:c1]) >= needed
    )
    touches = crown == 0 or soft_at_edge or (valid is not None and bool(np.any(valid[crown - 1, at_crown] < 0.99)))
    if touches:
        raise FaceCutOff("the top of the head is cut off by the edge of the photo")

    return HeadGeometry(
        image_size=(width, height),
        face=face,
        tilt_degrees=tilt,
        rotation_degrees=rotation,
        centre=centre,
        levelling=levelling,
        left_eye=left_eye,
        right_eye=right_eye,
        eye_y=eye_y,
        mid_x=mid_x,
        chin_y=chin_y,
        crown_y=float(crown),
        face_width=face.width,
    )


# --- planning -------------------------------------------------------------------------------------


def _crown_interval(spec: IdSpec, h: float, k: float, measures: tuple[Measure, ...]) -> tuple[float, float]:
    """Crown margins t (ratio of the height) that meet the rules of ``measures`` for head ratio h, when
    the eye line lies k below the crown."""
    lo, hi = 0.0, 1.0 - h
    for measure in measures:
        b = spec.bounds(measure)
        if b is None:
            continue
        if measure is Measure.CROWN_MARGIN:
            lo = lo if b.min is None else max(lo, b.min)
            hi = hi if b.max is None else min(hi, b.max)
        elif measure is Measure.EYE_LINE:  # eye_line = 1 - t - k
            lo = lo if b.max is None else max(lo, 1 - k - b.max)
            hi = hi if b.min is None else min(hi, 1 - k - b.min)
        elif measure is Measure.CHIN_MARGIN:  # chin_margin = 1 - t - h
            lo = lo if b.max is None else max(lo, 1 - h - b.max)
            hi = hi if b.min is None else min(hi, 1 - h - b.min)
    return lo, hi


def _preferred_crown(spec: IdSpec, h: float, k: float) -> float:
    crown = spec.bounds(Measure.CROWN_MARGIN)
    if crown is not None and crown.middle is not None:
        return crown.middle
    eye = spec.bounds(Measure.EYE_LINE)
    if eye is not None and eye.min is not None and eye.max is not None:
        return 1 - k - eye.middle  # type: ignore[operator]
    return (1 - h) * DEFAULT_CROWN_SHARE


def _head_candidates(bounds: Bounds, most: float) -> list[float]:
    """Head ratios to try, the middle of the range first and then outwards, none above ``most`` (the
    largest the upscale limit allows): then ``most`` itself first, the nearest to the middle."""
    low, high = bounds.min, bounds.max
    assert low is not None and high is not None
    middle = (low + high) / 2
    step = (high - low) / HEAD_STEPS
    candidates = [middle]
    for i in range(1, HEAD_STEPS // 2 + 1):
        candidates += [middle - i * step, middle + i * step]
    if most >= middle:
        return [h for h in candidates if h <= most]
    return [most, *(h for h in candidates if h < most)]


def _choose_geometry(spec: IdSpec, head: HeadGeometry, most: float) -> tuple[float, float, tuple[str, ...]]:
    """(head ratio, crown margin, relaxed measures): every rule met where possible; otherwise the
    crown margin gives way first (GA 461-2004 gives the eye line priority), then the chin margin. No
    head ratio above ``most``, which is at least the range's minimum."""
    bounds = spec.bounds(Measure.HEAD_HEIGHT)
    assert bounds is not None
    eye_share = (head.eye_y - head.crown_y) / head.head_height  # crown-to-eye as a share of the head
    all_rules = (Measure.CROWN_MARGIN, Measure.EYE_LINE, Measure.CHIN_MARGIN)
    attempts = [all_rules, (Measure.EYE_LINE, Measure.CHIN_MARGIN), (Measure.EYE_LINE,), ()]
    for measures in attempts:
        for h in _head_candidates(bounds, most):
            k = eye_share * h
            lo, hi = _crown_interval(spec, h, k, measures)
            if lo <= hi:
                t = min(max(_preferred_crown(spec, h, k), lo), hi)
                relaxed = tuple(m.value for m in all_rules if m not in measures and spec.bounds(m) is not None)
                return h, t, relaxed
    assert bounds.middle is not None
    h = min(bounds.middle, most)
    return h, min(max(_preferred_crown(spec, h, eye_share * h), 0.0), 1 - h), ()


def plan_frame(head: HeadGeometry, spec: IdSpec, *, max_upscale: float = MAX_UPSCALE) -> FramePlan:
    """The frame of ``spec`` around ``head``; ``ResolutionTooLow`` when even the smallest head the
    spec allows needs more than ``max_upscale`` (a head short of the middle of the range is enlarged
    only as far as the limit allows, and kept within the range)."""
    width, height = spec.pixel_size
    bounds = spec.bounds(Measure.HEAD_HEIGHT)
    assert bounds is not None and bounds.min is not None
    smallest = bounds.min * height / head.head_height
    if smallest > max_upscale:
        needed = math.ceil(bounds.min * height / max_upscale)
        raise ResolutionTooLow(
            f"the head is {head.head_height:.0f} px tall in the photo; {spec.id} needs it at least "
            f"{bounds.min * height:.0f} px tall, an upscale of {smallest:.2f}x, more than the allowed "
            f"{max_upscale:g}x (a head of at least {needed} px is needed)",
            factor=smallest,
            max_factor=max_upscale,
        )
    h, t, relaxed = _choose_geometry(spec, head, max_upscale * head.head_height / height)
    scale = h * height / head.head_height
    left = head.mid_x - width / (2 * scale)
    top = head.crown_y - t * height / scale
    crop = (left, top, left + width / scale, top + height / scale)
    matrix = head.levelling * scale
    matrix[:, 2] -= scale * np.array([left, top])
    return FramePlan(
        spec_id=spec.id,
        size=(width, height),
        scale=scale,
        crop=crop,
        rotation_degrees=head.rotation_degrees,
        centre=head.centre,
        matrix=matrix,
        planned_head_ratio=h,
        planned_crown_margin=t,
        rules_relaxed=relaxed,
    )


# --- rendering ------------------------------------------------------------------------------------


def _antialias_sigma(scale: float) -> float:
    """Gaussian sigma (source pixels) that removes what a shrink by ``scale`` cannot represent."""
    if scale >= 1.0:
        return 0.0
    return 0.5 * math.sqrt((1.0 / scale) ** 2 - 1.0)


def render_frame(rgb: np.ndarray, matte: np.ndarray, plan: FramePlan) -> tuple[np.ndarray, np.ndarray]:
    """The frame of ``plan`` from the full-resolution original: (uint8 (H, W, 3), float32 alpha (H, W))."""
    src_h, src_w = rgb.shape[:2]
    alpha = as_matte(matte, (src_w, src_h))
    width, height = plan.size
    inverse = cv2.invertAffineTransform(plan.matrix)
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], dtype=np.float64)
    source = corners @ inverse.T
    sigma = _antialias_sigma(plan.scale)
    pad = math.ceil(3 * sigma) + 4
    x0 = max(0, math.floor(source[:, 0].min()) - pad)
    y0 = max(0, math.floor(source[:, 1].min()) - pad)
    x1 = min(src_w, math.ceil(source[:, 0].max()) + pad)
    y1 = min(src_h, math.ceil(source[:, 1].max()) + pad)
    if x1 <= x0 or y1 <= y0:
        raise ValueError("the frame does not overlap the photo")
    region_rgb, region_alpha = rgb[y0:y1, x0:x1], alpha[y0:y1, x0:x1]
    if sigma > 0:
        region_rgb = cv2.GaussianBlur(region_rgb, (0, 0), sigma)
        region_alpha = cv2.GaussianBlur(region_alpha, (0, 0), sigma)
    matrix = plan.matrix.copy()
    matrix[:, 2] += plan.matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
    flags = cv2.INTER_LANCZOS4
    out_rgb = cv2.warpAffine(
        np.ascontiguousarray(region_rgb), matrix, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE
    )
    out_alpha = cv2.warpAffine(
        np.ascontiguousarray(region_alpha), matrix, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE
    )
    np.clip(out_alpha, 0.0, 1.0, out=out_alpha)
    # Outside the photo to the left, right and above there is nothing of the person: background.
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    outside = (sx < -0.5) | (sx > src_w - 0.5) | (sy < -0.5)
    out_alpha[outside] = 0.0
    return out_rgb, out_alpha.astype(np.float32, copy=False)


def measure_frame(alpha: np.ndarray, head: HeadGeometry, plan: FramePlan) -> FrameMeasures:
    """Measure a rendered frame: the crown from its matte, eyes and chin from the mapped landmarks."""
    width, height = plan.size
    if alpha.shape != (height, width):
        raise ValueError(f"alpha shape {alpha.shape} does not match the frame {width}x{height}")
    eye = plan.to_output(Point(head.mid_x, head.eye_y))
    chin = plan.to_output(Point(head.mid_x, head.chin_y))
    nose = plan.to_output(_apply(head.levelling, head.face.nose))
    half = CROWN_BAND * head.face_width * plan.scale
    head_alpha = head_region(alpha, nose, _nose_radius(head.face_width * plan.scale))
    crown_row = find_crown(head_alpha, eye.x - half, eye.x + half, eye.y)
    crown = float(crown_row) if crown_row is not None else plan.to_output(Point(head.mid_x, head.crown_y)).y
    return FrameMeasures(
        head_height=(chin.y - crown) / height,
        crown_margin=crown / height,
        eye_line=1.0 - eye.y / height,
        chin_margin=1.0 - chin.y / height,
        horizontal_offset=(eye.x - width / 2) / width,
        residual_tilt_degrees=head.tilt_degrees - head.rotation_degrees,
        crown_px=crown,
        chin_px=chin.y,
        eye_px=eye.y,
    )
