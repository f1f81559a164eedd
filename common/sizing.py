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
