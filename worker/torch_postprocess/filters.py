"""Box and Gaussian blurs on (B, C, H, W) float32 tensors, with OpenCV's default border.

OpenCV's filters extend an image by ``BORDER_REFLECT_101`` (``dcb|abcd|cba``), repeated as often as a
kernel wider than the image needs; torch's own reflect padding refuses a pad wider than the image, so
the border is an index map here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def reflect101_indices(size: int, pad: int, device: torch.device) -> torch.Tensor:
    """Source indices of ``size + 2 * pad`` positions of a line extended by ``pad`` on each side."""
    positions = torch.arange(-pad, size + pad, device=device)
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * (size - 1)
    folded = positions.remainder(period)
    return torch.where(folded >= size, period - folded, folded)


def pad_reflect101(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """``x`` extended by ``pad`` positions on both sides of dimension ``dim``."""
    return x.index_select(dim, reflect101_indices(x.shape[dim], pad, x.device))


def _box_line(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    # Window sums as differences of a running sum: O(1) per pixel whatever the radius. The sum runs in
    # float64 (as OpenCV's box filter does for float input) so that a window of zeros stays exactly zero
    # and the difference of two large sums keeps its precision.
    size = 2 * radius + 1
    padded = pad_reflect101(x, radius, dim).to(torch.float64)
    running = F.pad(padded.cumsum(dim).movedim(dim, -1), (1, 0)).movedim(-1, dim)
    length = x.shape[dim]
    sums = running.narrow(dim, size, length) - running.narrow(dim, 0, length)
    return (sums / size).to(x.dtype)


def box_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Normalised box blur of side ``2 * radius + 1`` over the last two dimensions (``cv2.blur``)."""
    return _box_line(_box_line(x, radius, -1), radius, -2)


def gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    """OpenCV's kernel for float images and ``ksize=(0, 0)``: ``round(8 * sigma + 1) | 1`` taps,
    normalised ``exp(-x² / 2σ²)``, computed in float64 like ``cv2.getGaussianKernel``."""
    taps = math.floor(sigma * 8 + 1 + 0.5) | 1
    x = torch.arange(taps, dtype=torch.float64, device=device) - (taps - 1) / 2
    kernel = torch.exp(-(x * x) / (2 * sigma * sigma))
    return (kernel / kernel.sum()).to(torch.float32)


def _convolve_line(x: torch.Tensor, kernel: torch.Tensor, dim: int) -> torch.Tensor:
    radius = (kernel.numel() - 1) // 2
    padded = pad_reflect101(x, radius, dim).movedim(dim, -1)
    shape = padded.shape
    lines = padded.reshape(-1, 1, shape[-1])
    out = F.conv1d(lines, kernel.view(1, 1, -1))
    return out.reshape(*shape[:-1], out.shape[-1]).movedim(-1, dim)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of the last two dimensions (``cv2.GaussianBlur(x, (0, 0), sigma)``)."""
    kernel = gaussian_kernel(sigma, x.device)
    return _convolve_line(_convolve_line(x, kernel, -1), kernel, -2)
