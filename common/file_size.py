"""Reaching a file-size target by JPEG quality alone.

``max_kb`` gets the highest quality whose file fits, found by binary search; ``min_kb`` is met by
raising the quality, never by padding the file. Either limit that no allowed quality meets raises
``FileSizeUnreachable``. KB is read strictly both ways, since forms rarely say which they mean: the
maximum as ``max_kb * 1000`` bytes and the minimum as ``min_kb * 1024`` bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from common.errors import FileSizeUnreachable, InvalidOption
from common.imaging import encode_image

MIN_QUALITY = 30  # below this JPEG artefacts spoil a face
MAX_QUALITY = 95  # above this files grow with no visible gain
DEFAULT_QUALITY = 92


def max_bytes(max_kb: float) -> int:
    return int(max_kb * 1000)


def min_bytes(min_kb: float) -> int:
    return int(min_kb * 1024 + 0.999999)


@dataclass(frozen=True)
class SizedJpeg:
    data: bytes
    quality: int
    encodings: int  # how many encodings the search took


def _highest_fitting(encode: Callable[[int], bytes], low: int, high: int, limit: int) -> tuple[int, bytes] | None:
    """The highest q in [low, high] whose encoding is at most ``limit`` bytes, given encode(low) fits."""
    best_q, best = low, encode(low)
    if len(best) > limit:
        return None
    top = encode(high)
    if len(top) <= limit:
        return high, top
    lo, hi = low, high  # invariant: lo fits, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        data = encode(mid)
        if len(data) <= limit:
            lo, best_q, best = mid, mid, data
        else:
            hi = mid
    return best_q, best


def _lowest_reaching(encode: Callable[[int], bytes], low: int, high: int, limit: int) -> tuple[int, bytes] | None:
    """The lowest q in [low, high] whose encoding is at least ``limit`` bytes."""
    top = encode(high)
    if len(top) < limit:
        return None
    first = encode(low)
    if len(first) >= limit:
        return low, first
    lo, hi, best = low, high, top  # invariant: lo is too small, hi reaches
    while hi - lo > 1:
        mid = (lo + hi) // 2
        data = encode(mid)
        if len(data) >= limit:
            hi, best = mid, data
        else:
            lo = mid
    return hi, best


def encode_jpeg_within(
    rgb: np.ndarray,
    *,
    dpi: tuple[float, float] | None = None,
    max_kb: float | None = None,
    min_kb: float | None = None,
    quality: int = DEFAULT_QUALITY,
    min_quality: int = MIN_QUALITY,
    max_quality: int = MAX_QUALITY,
) -> SizedJpeg:
    """Encode ``rgb`` as JPEG within the size limits, at the highest quality that fits ``max_kb``.

    Without ``max_kb`` the file is encoded at ``quality``, raised only as far as ``min_kb`` needs.
    """
    if not 1 <= min_quality <= max_quality <= 100:
        raise InvalidOption(f"quality bounds must satisfy 1 <= {min_quality} <= {max_quality} <= 100")
    for name, value in (("max_kb", max_kb), ("min_kb", min_kb)):
        if value is not None and not value > 0:
            raise InvalidOption(f"{name} must be a positive number, got {value!r}")
    cache: dict[int, bytes] = {}

    def encode(q: int) -> bytes:
        if q not in cache:
            cache[q] = encode_image(rgb, "jpeg", quality=q, dpi=dpi)
        return cache[q]

    if max_kb is not None:
        found = _highest_fitting(encode, min_quality, max_quality, max_bytes(max_kb))
        if found is None:
            raise FileSizeUnreachable(
                f"even at the lowest allowed JPEG quality ({min_quality}) the photo is "
                f"{len(encode(min_quality))} bytes, above the limit of {max_kb:g} KB ({max_bytes(max_kb)} bytes)"
            )
        q, data = found
        if min_kb is not None and len(data) < min_bytes(min_kb):
            # A minimum may need more than the ceiling, as it may without a maximum: up to 100, if it fits.
            reached = _lowest_reaching(encode, q + 1, 100, min_bytes(min_kb)) if q < 100 else None
            if reached is None or len(reached[1]) > max_bytes(max_kb):
                raise FileSizeUnreachable(
                    f"no JPEG quality gives a file between {min_kb:g} KB and {max_kb:g} KB: at quality {q}, the "
                    f"highest within the maximum, the photo is {len(data)} bytes"
                )
            q, data = reached
        return SizedJpeg(data=data, quality=q, encodings=len(cache))

    start = min(max(quality, 1), 100)
    data = encode(start)
    if min_kb is None or len(data) >= min_bytes(min_kb):
        return SizedJpeg(data=data, quality=start, encodings=len(cache))
    found = _lowest_reaching(encode, start, 100, min_bytes(min_kb))
    if found is None:
        raise FileSizeUnreachable(
            f"even at JPEG quality 100 the photo is {len(encode(100))} bytes, below the minimum of {min_kb:g} KB "
            f"({min_bytes(min_kb)} bytes); the minimum is not met by padding the file"
        )
    q, data = found
    return SizedJpeg(data=data, quality=q, encodings=len(cache))
