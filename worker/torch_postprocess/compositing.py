"""Foreground colour estimation and alpha compositing on (B, C, H, W) tensors.

The blur-fusion estimator of ``common.compositing`` (Forte & Pitié, ICIP 2021), the same two passes
with the same radii, and the same compositing and rounding; colours float32 in [0, 1], alpha
(B, 1, H, W) in [0, 1], final images uint8 rounded to nearest (half to even, as ``np.rint``).
"""

from __future__ import annotations

import torch

from common.compositing import EPS, blur_radii
from worker.torch_postprocess.filters import box_blur


def to_unit(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 code values -> float32 in [0, 1] (value / 255)."""
    return rgb.to(torch.float32) / 255.0


def to_code_values(values: torch.Tensor) -> torch.Tensor:
    """float [0, 1] -> uint8, rounded to nearest and clipped, never truncated."""
    return (values * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def _means(
    alpha: torch.Tensor, fg_weighted: torch.Tensor, bg_weighted: torch.Tensor, radius: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fb = blur(F*a) / blur(a) and Bb = blur(B*(1-a)) / blur(1-a); blur(1-a) is 1 - blur(a)."""
    blur_a = box_blur(alpha, radius).clamp_min_(0.0)
    fb = box_blur(fg_weighted, radius) / (blur_a + EPS)
    bb = box_blur(bg_weighted, radius) / ((1.0 - blur_a).clamp_min_(0.0) + EPS)
    return fb, bb.clamp_(0.0, 1.0)


def _correct(fb: torch.Tensor, bb: torch.Tensor, alpha: torch.Tensor, a_image: torch.Tensor) -> torch.Tensor:
    """F = Fb + a*(I - a*Fb - (1-a)*Bb), clipped to [0, 1]."""
    mixture = (fb - bb) * alpha + bb
    return (fb - mixture * alpha + a_image).clamp_(0.0, 1.0)


def estimate_foreground(image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The foreground colour of every pixel of (B, 3, H, W) images under their (B, 1, H, W) mattes,
    without the old background's bleed: a large-radius pass with F = B = image, then a small-radius
    pass from its F and blurred B."""
    alpha = alpha.clamp(0.0, 1.0)
    large, small = blur_radii(*image.shape[-2:])
    a_image = image * alpha
    fb, bb = _means(alpha, a_image, image - a_image, large)
    foreground = _correct(fb, bb, alpha, a_image)
    fb, bb = _means(alpha, foreground * alpha, bb - bb * alpha, small)
    return _correct(fb, bb, alpha, a_image)


def composite(foreground: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """F*a + B*(1-a) as (B, 3, H, W) uint8."""
    alpha = alpha.clamp(0.0, 1.0)
    return to_code_values(foreground * alpha + background * (1.0 - alpha))


def cutout(foreground: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """(B, 4, H, W) uint8 RGBA with straight (not premultiplied) alpha."""
    alpha = alpha.clamp(0.0, 1.0)
    return torch.cat([to_code_values(foreground), to_code_values(alpha)], dim=1)
