"""The size of the network input for a photo of a given size.

MODNet needs both sides to be multiples of 32 (its encoder downsamples five times).
"""

from __future__ import annotations

from enum import StrEnum

MULTIPLE = 32


class SizeRule(StrEnum):
    """How to choose the network input size."""

    ASPECT = "aspect"  # ours: keep the aspect ratio, bounded long side
    COLAB = "colab"  # the official colab demo's rule, kept to reproduce its outputs exactly


def _round_to_multiple(value: float) -> int:
    return max(MULTIPLE, round(value / MULTIPLE) * MULTIPLE)


def inference_size(height: int, width: int, *, ref_size: int = 512, max_side: int = 1024) -> tuple[int, int]:
    """(rh, rw): short side scaled to about ``ref_size``, long side at most ``max_side``,
    both rounded to the nearest multiple of 32 (at least 32), aspect ratio kept up to that rounding."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    scale = ref_size / min(height, width)
    scale = min(scale, max_side / max(height, width))
    rh = min(_round_to_multiple(height * scale), max(MULTIPLE, max_side // MULTIPLE * MULTIPLE))
    rw = min(_round_to_multiple(width * scale), max(MULTIPLE, max_side // MULTIPLE * MULTIPLE))
    return rh, rw


def colab_inference_size(height: int, width: int, *, ref_size: int = 512) -> tuple[int, int]:
    """The official colab rule: scale the short side to ``ref_size`` only when both sides are
    below it or both above it, then round down to multiples of 32. It has no upper bound and
    gives 0 for sides under 32 (the official script then crashes); we raise instead."""
    if max(height, width) < ref_size or min(height, width) > ref_size:
        if width >= height:
            rh, rw = ref_size, ref_size * width // height
        else:
            rh, rw = ref_size * height // width, ref_size
    else:
        rh, rw = height, width
    rh -= rh % MULTIPLE
    rw -= rw % MULTIPLE
    if rh == 0 or rw == 0:
        raise ValueError(f"the colab size rule gives {rh}x{rw} for a {height}x{width} image")
    return rh, rw


def network_input_size(
    height: int, width: int, rule: SizeRule = SizeRule.ASPECT, *, ref_size: int = 512, max_side: int = 1024
) -> tuple[int, int]:
    """Dispatch on ``rule``."""
    if rule is SizeRule.COLAB:
        return colab_inference_size(height, width, ref_size=ref_size)
    return inference_size(height, width, ref_size=ref_size, max_side=max_side)


# Shape buckets: the aspect ratios (long side / short side) network inputs are snapped to, so that
# concurrent jobs share a batch and engines reuse the shapes they have compiled. ID and portrait
# photos are mostly 1:1, 4:5, 3:4 and 2:3 (passport, visa and phone-camera framings); 9:16 covers
# phone screenshots and video frames. Each ratio gives a portrait and a landscape bucket.
BUCKET_RATIOS: tuple[float, ...] = (1.0, 5 / 4, 4 / 3, 3 / 2, 16 / 9)
# Largest change of a photo's aspect ratio a bucket may impose; photos further from every bucket keep
# their own size (measured in bench/RESULTS.md: the matte moves by under 1e-2 mean |Δα| within it).
MAX_BUCKET_DISTORTION = 0.12


def bucket_sizes(*, ref_size: int = 512, max_side: int = 1024) -> list[tuple[int, int]]:
    """Every bucket's (rh, rw), portrait and landscape, for these inference settings."""
    sizes: list[tuple[int, int]] = []
    short = _round_to_multiple(ref_size)
    for ratio in BUCKET_RATIOS:
        long = _round_to_multiple(short * ratio)
        if long > max_side:
            continue
        for size in ((long, short), (short, long)):
            if size not in sizes:
                sizes.append(size)
    return sizes


def bucket_size(
    height: int,
    width: int,
    *,
    ref_size: int = 512,
    max_side: int = 1024,
    max_distortion: float = MAX_BUCKET_DISTORTION,
) -> tuple[int, int] | None:
    """The bucket a ``height`` x ``width`` photo is resized into (same orientation, nearest aspect
    ratio), or None when its aspect ratio is more than ``max_distortion`` away from every bucket or
    the bucket would break the ``max_side`` bound."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if max(height, width) / min(height, width) > BUCKET_RATIOS[-1] * (1 + max_distortion):
        return None
    aspect = height / width
    best: tuple[float, tuple[int, int]] | None = None
    for rh, rw in bucket_sizes(ref_size=ref_size, max_side=max_side):
        if (rh > rw) != (height > width) and rh != rw:
            continue
        change = max(aspect, rh / rw) / min(aspect, rh / rw) - 1
        if change <= max_distortion and (best is None or change < best[0]):
            best = (change, (rh, rw))
    return None if best is None else best[1]


def bucketed_inference_size(
    height: int, width: int, *, ref_size: int = 512, max_side: int = 1024, max_distortion: float = MAX_BUCKET_DISTORTION
) -> tuple[int, int]:
    """The photo's bucket when it has one, else its own aspect-preserving size (``inference_size``)."""
    bucket = bucket_size(height, width, ref_size=ref_size, max_side=max_side, max_distortion=max_distortion)
    return bucket if bucket is not None else inference_size(height, width, ref_size=ref_size, max_side=max_side)
