"""What goes behind the person: parsing the ``background`` option and rendering it at the photo's size.

``background_rows`` renders a strip of rows at a time for ``common.compositing.compose`` (uint8 for a
colour or an image, float32 in [0, 1] for the blur), so no whole-photo float array is made;
``render_background`` renders the whole of it as float32 (H, W, 3) in [0, 1] (sRGB code value / 255),
for ``common.compositing.composite``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np

from common.compositing import STRIP_ROWS, BackgroundRows, to_float
from common.errors import InvalidOption

# The usual ID-photo backdrops.
PRESETS: dict[str, tuple[int, int, int]] = {
    "red": (208, 0, 0),
    "blue": (0, 143, 213),
    "green": (0, 134, 134),
    "white": (255, 255, 255),
}

ACCEPTED_FORMS = (
    f"one of {', '.join(PRESETS)}, a colour '#RRGGBB' or '#RGB', 'transparent', 'blur', "
    "or 'image' (with a background image)"
)

_HEX = re.compile(r"#([0-9a-f]{3}|[0-9a-f]{6})")

# BLUR: Gaussian sigma as a fraction of the long side, with a floor so small photos still blur.
BLUR_SIGMA_FRACTION = 0.02
MIN_BLUR_SIGMA = 3.0
# Large sigmas are applied on a shrunken copy (the result is smooth anyway): sigma there is >= this.
SMALL_SIGMA = 4.0
# Below this share of background weight in the neighbourhood, the normalised blur is unreliable and
# fades into a plain blur of the original (only happens deep inside the person, where alpha hides it).
MIN_WEIGHT = 1e-3


class BackgroundKind(StrEnum):
    COLOR = "color"
    TRANSPARENT = "transparent"
    BLUR = "blur"
    IMAGE = "image"


def _check_color(color: object) -> tuple[int, int, int]:
    """A valid (r, g, b) tuple of ints in 0..255, or InvalidOption."""
    if (
        not isinstance(color, tuple)
        or len(color) != 3
        or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color)
    ):
        raise InvalidOption(f"a background colour must be three integers 0..255, got {color!r}")
    return color


def _check_image(image: object) -> np.ndarray:
    """A valid (h, w, 3) uint8 RGB array, or InvalidOption."""
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
        or image.shape[0] < 1
        or image.shape[1] < 1
    ):
        desc = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else repr(image)
        raise InvalidOption(f"a background image must be an (h, w, 3) uint8 RGB array, got {desc}")
    return image


@dataclass(frozen=True)
class BackgroundSpec:
    """A parsed background choice: the kind plus the colour (COLOR) or decoded RGB image (IMAGE)."""

    kind: BackgroundKind
    color: tuple[int, int, int] | None = None
    # Arrays neither compare nor hash meaningfully, so the image takes no part in == / hash / repr.
    image: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        try:
            kind = BackgroundKind(self.kind)
        except ValueError:
            raise InvalidOption(f"unknown background kind {self.kind!r}") from None
        object.__setattr__(self, "kind", kind)
        if kind is BackgroundKind.COLOR:
            _check_color(self.color)
        if kind is BackgroundKind.IMAGE:
            _check_image(self.image)


def parse_background(spec: str, *, image: np.ndarray | None = None) -> BackgroundSpec:
    """Parse the user's ``background`` option (case-insensitive, surrounding spaces ignored).

    Accepts a preset name, ``#RRGGBB`` / ``#RGB``, ``transparent``, ``blur``, or ``image`` (which needs
    ``image``, the decoded background). ``image`` is ignored for the other forms.
    """
    if not isinstance(spec, str):
        raise InvalidOption(f"invalid background {spec!r}: expected {ACCEPTED_FORMS}")
    text = spec.strip().lower()
    if text in PRESETS:
        return BackgroundSpec(BackgroundKind.COLOR, color=PRESETS[text])
    if text == BackgroundKind.TRANSPARENT.value:
        return BackgroundSpec(BackgroundKind.TRANSPARENT)
    if text == BackgroundKind.BLUR.value:
        return BackgroundSpec(BackgroundKind.BLUR)
    if text == BackgroundKind.IMAGE.value:
        if image is None:
            raise InvalidOption("background 'image' needs a background image, and none was given")
        return BackgroundSpec(BackgroundKind.IMAGE, image=image)
    match = _HEX.fullmatch(text)
    if match is None:
        raise InvalidOption(f"invalid background {spec!r}: expected {ACCEPTED_FORMS}")
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    color = (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
    return BackgroundSpec(BackgroundKind.COLOR, color=color)


def render_background(
    spec: BackgroundSpec,
    *,
    size: tuple[int, int],
    original: np.ndarray | None = None,
    alpha: np.ndarray | None = None,
) -> np.ndarray:
    """Render ``spec`` at ``size`` = (width, height) as float32 (H, W, 3) in [0, 1].

    BLUR needs ``original`` (H, W, 3) uint8 and its ``alpha`` (H, W) in [0, 1]. TRANSPARENT has no
    background to render and raises InvalidOption (callers build a cutout instead).
    """
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive (width, height), got {size}")
    if spec.kind is BackgroundKind.COLOR:
        color = to_float(np.array(_check_color(spec.color), dtype=np.uint8))
        out = np.empty((height, width, 3), dtype=np.float32)
        out[:] = color
        return out
    if spec.kind is BackgroundKind.IMAGE:
        return to_float(cover_fit(_check_image(spec.image), (width, height)))
    if spec.kind is BackgroundKind.BLUR:
        if original is None or alpha is None:
            raise ValueError("a blurred background needs the original photo and its alpha")
        return blurred_background(original, alpha, (width, height))
    raise InvalidOption("a transparent background has nothing to render; build a cutout instead")


def background_rows(
    spec: BackgroundSpec,
    *,
    size: tuple[int, int],
    original: np.ndarray | None = None,
    alpha: np.ndarray | None = None,
) -> BackgroundRows:
    """``spec`` at ``size`` = (width, height), as a function of a row range y0:y1 that returns those rows:
    uint8 (rows, W, 3) for a colour (one shared block: read it, never write it) or an image, float32 in
    [0, 1] for the blur, whose whole-photo arrays are only ever made at its reduced resolution."""
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive (width, height), got {size}")
    if spec.kind is BackgroundKind.COLOR:
        return _color_rows(_check_color(spec.color), width)
    if spec.kind is BackgroundKind.IMAGE:
        canvas = cover_fit(_check_image(spec.image), (width, height))
        return lambda y0, y1: canvas[y0:y1]
    if spec.kind is BackgroundKind.BLUR:
        if original is None or alpha is None:
            raise ValueError("a blurred background needs the original photo and its alpha")
        return blurred_background_rows(original, alpha, (width, height))
    raise InvalidOption("a transparent background has nothing to render; build a cutout instead")


def cover_fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale ``image`` to cover ``size`` = (width, height) keeping its aspect ratio, then centre-crop."""
    width, height = size
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    # Rounding may land one pixel short of the canvas; never let it.
    new_w, new_h = max(width, round(w * scale)), max(height, round(h * scale))
    if (new_w, new_h) != (w, h):
        shrinking = new_w < w or new_h < h
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
        # uint8 in, uint8 out: cubic overshoot is saturated (clipped) by the resize itself.
        image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    x0, y0 = (new_w - width) // 2, (new_h - height) // 2
    return np.ascontiguousarray(image[y0 : y0 + height, x0 : x0 + width])


def blur_sigma(width: int, height: int) -> float:
    """Gaussian sigma of the BLUR background for a photo of this size."""
    return max(MIN_BLUR_SIGMA, BLUR_SIGMA_FRACTION * max(width, height))


def _color_rows(color: tuple[int, int, int], width: int) -> BackgroundRows:
    """Rows of one colour: views of one block, enlarged when a taller strip is asked for."""
    block = np.empty((0, width, 3), dtype=np.uint8)

    def rows_of(y0: int, y1: int) -> np.ndarray:
        nonlocal block
        if y1 - y0 > len(block):
            block = np.empty((y1 - y0, width, 3), dtype=np.uint8)
            block[:] = color
        return block[: y1 - y0]

    return rows_of


def blurred_background(original: np.ndarray, alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The photo's own background, blurred without smearing the person into it: float32 (H, W, 3).

    A normalised convolution blur(I * (1-a)) / blur(1-a) averages only background pixels; where the
    neighbourhood holds (almost) no background, it fades into a plain blur of the photo.
    """
    return blurred_background_rows(original, alpha, size)(0, size[1])


def _area_weights(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights of an area-averaging shrink of ``src`` samples to ``dst`` (OpenCV's INTER_AREA)."""
    scale = src / dst
    starts = np.arange(dst)[:, None] * scale
    lo, hi = np.arange(src)[None, :], np.arange(src)[None, :] + 1
    overlap = np.clip(np.minimum(hi, starts + scale) - np.maximum(lo, starts), 0.0, None)
    return (overlap / scale).astype(np.float32)


def _row_strips(height: int) -> Iterator[tuple[int, int]]:
    for y0 in range(0, height, STRIP_ROWS):
        yield y0, min(height, y0 + STRIP_ROWS)


def blurred_background_rows(original: np.ndarray, alpha: np.ndarray, size: tuple[int, int]) -> BackgroundRows:
    """``blurred_background`` as rows (float32 in [0, 1]). Large sigmas are applied on a copy shrunk by
    area averaging, built a strip of rows at a time (across, by OpenCV; down, by a weight matrix, the
    same averages), and the rows asked for are enlarged bilinearly from it, as a whole-photo resize would."""
    width, height = size
    if original.shape != (height, width, 3):
        raise ValueError(f"original shape {original.shape} does not match size {size}")
    if alpha.shape != (height, width):
        raise ValueError(f"alpha shape {alpha.shape} does not match size {size}")
    sigma = blur_sigma(width, height)
    factor = max(1, math.floor(sigma / SMALL_SIGMA))
    sw, sh = (max(1, round(width / factor)), max(1, round(height / factor))) if factor > 1 else (width, height)
    down = _area_weights(height, sh) if factor > 1 else None
    weighted = np.zeros((sh, sw, 3), np.float32)
    weight = np.zeros((sh, sw), np.float32)
    img = np.zeros((sh, sw, 3), np.float32)
    for y0, y1 in _row_strips(height):
        strip_img = to_float(original[y0:y1])
        strip_weight = np.clip(np.float32(1.0) - to_float(alpha[y0:y1]), 0.0, 1.0)
        strip_weighted = strip_img * cv2.merge([strip_weight, strip_weight, strip_weight])
        if down is None:
            weighted[y0:y1], weight[y0:y1], img[y0:y1] = strip_weighted, strip_weight, strip_img
            continue
        # Area averaging is linear, so shrinking first keeps the weighted average a weighted average.
        rows = down[:, y0:y1]
        used = np.flatnonzero(rows.any(axis=1))
        d0, d1 = int(used[0]), int(used[-1]) + 1
        for acc, strip in ((weighted, strip_weighted), (weight, strip_weight), (img, strip_img)):
            across = cv2.resize(strip, (sw, y1 - y0), interpolation=cv2.INTER_AREA)
            acc[d0:d1] += (rows[d0:d1] @ across.reshape(y1 - y0, -1)).reshape(acc[d0:d1].shape)
    weighted, weight, plain = (cv2.GaussianBlur(x, (0, 0), sigma / factor) for x in (weighted, weight, img))
    weight = weight[:, :, None]
    normalised = weighted / (weight + np.float32(1e-6))
    trust = np.clip(weight / np.float32(MIN_WEIGHT), 0.0, 1.0)
    small = plain + trust * (normalised - plain)
    np.clip(small, 0.0, 1.0, out=small)
    if factor == 1:
        return lambda y0, y1: small[y0:y1]
    # Linear interpolation of values in [0, 1] stays in [0, 1]; sample positions as cv2.resize's.
    position = np.clip((np.arange(height) + 0.5) * (sh / height) - 0.5, 0.0, sh - 1)
    below = np.minimum(np.floor(position).astype(np.intp), sh - 1)
    above = np.minimum(below + 1, sh - 1)
    frac = (position - below).astype(np.float32)[:, None, None]

    def rows_of(y0: int, y1: int) -> np.ndarray:
        down_rows = small[below[y0:y1]] * (np.float32(1.0) - frac[y0:y1]) + small[above[y0:y1]] * frac[y0:y1]
        return cv2.resize(down_rows, (width, y1 - y0), interpolation=cv2.INTER_LINEAR)

    return rows_of
