"""What goes behind the person, rendered on the device: a colour, an image scaled to cover the photo,
or the photo's own background blurred (``common.backgrounds.render_background`` for tensors)."""

from __future__ import annotations

import math

import numpy as np
import torch

from common.backgrounds import MIN_WEIGHT, SMALL_SIGMA, BackgroundKind, BackgroundSpec, blur_sigma
from common.errors import InvalidOption
from worker.torch_postprocess.compositing import to_unit
from worker.torch_postprocess.filters import gaussian_blur
from worker.torch_postprocess.resize import cover_fit_tensor, resize_area, resize_linear


def blurred_background(image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) photos' own backgrounds blurred by a normalised convolution that averages only
    background pixels, fading into a plain blur where a neighbourhood holds (almost) none."""
    height, width = image.shape[-2:]
    weight = (1.0 - alpha).clamp(0.0, 1.0)
    weighted = image * weight
    sigma = blur_sigma(width, height)
    factor = max(1, math.floor(sigma / SMALL_SIGMA))
    plain = image
    if factor > 1:
        # Area averaging is linear, so shrinking first keeps the weighted average a weighted average.
        small = (max(1, round(height / factor)), max(1, round(width / factor)))
        weighted, weight, plain = (resize_area(x, small) for x in (weighted, weight, plain))
    weighted, weight, plain = (gaussian_blur(x, sigma / factor) for x in (weighted, weight, plain))
    normalised = weighted / (weight + 1e-6)
    trust = (weight / MIN_WEIGHT).clamp(0.0, 1.0)
    out = (plain + trust * (normalised - plain)).clamp_(0.0, 1.0)
    return resize_linear(out, (height, width)) if factor > 1 else out


def render_background(
    spec: BackgroundSpec, image: torch.Tensor, alpha: torch.Tensor, background_image: torch.Tensor | None = None
) -> torch.Tensor:
    """``spec`` at the size of the (B, 3, H, W) float photos ``image``, float32 (B, 3, H, W) in [0, 1].
    ``background_image``: the (3, h, w) uint8 image of ``background=image`` on the device (else the
    spec's own array is uploaded)."""
    batch, _, height, width = image.shape
    if spec.kind is BackgroundKind.COLOR:
        colour = to_unit(torch.tensor(spec.color, dtype=torch.uint8, device=image.device))
        return colour.view(1, 3, 1, 1).expand(batch, 3, height, width)
    if spec.kind is BackgroundKind.IMAGE:
        if background_image is None:
            background_image = torch.from_numpy(np.ascontiguousarray(spec.image)).permute(2, 0, 1).to(image.device)
        fitted = to_unit(cover_fit_tensor(background_image, (width, height)))
        return fitted.unsqueeze(0).expand(batch, 3, height, width)
    if spec.kind is BackgroundKind.BLUR:
        return blurred_background(image, alpha)
    raise InvalidOption("a transparent background has nothing to render; build a cutout instead")
