"""Resizes of (B, C, H, W) tensors that reproduce OpenCV's: area averaging, bilinear and bicubic.

``cv2.INTER_AREA`` shrinking by a non-integer factor weighs each source pixel by the share of it a
destination cell covers; ``F.interpolate(mode="area")`` (adaptive pooling over whole pixels) does not,
so area resizes here are products with OpenCV's own weight matrices, one per axis. OpenCV's bilinear and
bicubic resizes sample at half-pixel centres with clamped borders, as ``F.interpolate`` does with
``align_corners=False`` (both bicubics use a = -0.75).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from common.pipeline import network_input


@lru_cache(maxsize=64)
def _area_weights_host(source: int, target: int) -> np.ndarray:
    """(target, source) weights of ``cv2.INTER_AREA`` along one axis, ``source >= target``."""
    scale = source / target
    weights = np.zeros((target, source), dtype=np.float64)
    for dst in range(target):
        start, end = dst * scale, dst * scale + scale
        cell = min(scale, source - start)
        first, last = math.ceil(start), math.floor(end)
        last = min(last, source - 1)
        first = min(first, last)
        if first - start > 1e-3:
            weights[dst, first - 1] = (first - start) / cell
        weights[dst, first:last] = 1 / cell
        if end - last > 1e-3:
            weights[dst, last] = min(min(end - last, 1.0), cell) / cell
    return weights


def area_weights(source: int, target: int, device: torch.device) -> torch.Tensor:
    """The float32 (target, source) weight matrix of an area shrink along one axis."""
    return torch.from_numpy(_area_weights_host(source, target)).to(device=device, dtype=torch.float32)


def resize_area(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float (B, C, H, W) shrunk to ``size`` = (h, w) by area averaging (``cv2.INTER_AREA``, both
    factors at least 1)."""
    height, width = x.shape[-2:]
    h, w = size
    if h > height or w > width:
        raise ValueError(f"an area resize shrinks; {height}x{width} -> {h}x{w} enlarges")
    rows = area_weights(height, h, x.device)
    columns = area_weights(width, w, x.device)
    return rows @ x @ columns.T


def resize_linear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float (B, C, H, W) resized to ``size`` = (h, w) bilinearly (``cv2.INTER_LINEAR``)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def resize_cubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float (B, C, H, W) resized to ``size`` = (h, w) bicubically (``cv2.INTER_CUBIC``)."""
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


def round_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float code values 0..255 -> uint8, rounded to nearest and saturated, as OpenCV stores them."""
    return x.round().clamp_(0, 255).to(torch.uint8)


def network_input_tensor(rgb: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The (B, 3, rh, rw) uint8 network input of (B, 3, H, W) uint8 photos, as ``common.pipeline.
    network_input`` makes it: area averaging when shrinking, bilinear when enlarging. A resize that
    shrinks one side and enlarges the other (OpenCV's area mode then follows a rule of its own) is
    made on the host by that function."""
    height, width = rgb.shape[-2:]
    rh, rw = size
    if (height, width) == (rh, rw):
        return rgb
    if rh * rw >= height * width:
        return round_to_uint8(resize_linear(rgb.float(), size))
    if rh <= height and rw <= width:
        return round_to_uint8(resize_area(rgb.float(), size))
    host = rgb.permute(0, 2, 3, 1).cpu().numpy()
    resized = np.stack([network_input(image, size) for image in host])
    return torch.from_numpy(resized).permute(0, 3, 1, 2).to(rgb.device)


def cover_fit_tensor(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(3, h, w) uint8 scaled to cover ``size`` = (width, height) keeping its aspect ratio, then
    centre-cropped: ``common.backgrounds.cover_fit`` on the device."""
    width, height = size
    h, w = image.shape[-2:]
    scale = max(width / w, height / h)
    new_w, new_h = max(width, round(w * scale)), max(height, round(h * scale))
    x = image.unsqueeze(0)
    if (new_w, new_h) != (w, h):
        # One scale for both sides: a shrink shrinks both (area), an enlargement enlarges both (cubic).
        if new_w < w or new_h < h:
            x = round_to_uint8(resize_area(x.float(), (new_h, new_w)))
        else:
            x = round_to_uint8(resize_cubic(x.float(), (new_h, new_w)))
    x0, y0 = (new_w - width) // 2, (new_h - height) // 2
    return x[0, :, y0 : y0 + height, x0 : x0 + width]
