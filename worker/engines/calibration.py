"""Calibration portraits for the reduced-precision self-check, drawn here so they may ship anywhere.

Three head-and-shoulders drawings (no one's photo) with the edges a matte is judged on: hair strands
against a wall, a shirt against a darker or lighter background, soft shading. The same size always
gives the same pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# wall top, wall bottom, skin, hair, shirt
_PALETTES = (
    ((228, 224, 216), (196, 192, 184), (222, 176, 146), (54, 38, 28), (40, 62, 102)),
    ((70, 96, 140), (40, 58, 96), (176, 126, 92), (22, 18, 16), (210, 206, 198)),
    ((150, 160, 120), (110, 122, 84), (236, 196, 170), (196, 150, 86), (128, 40, 44)),
)


def _portrait(height: int, width: int, palette: tuple[tuple[int, int, int], ...], seed: int) -> np.ndarray:
    wall_top, wall_bottom, skin, hair, shirt = palette
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    wall = (1 - t) * np.array(wall_top, np.float32) + t * np.array(wall_bottom, np.float32)
    image = Image.fromarray(np.broadcast_to(wall, (height, width, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    cx = width * (0.5 + 0.06 * (seed - 1))
    head_w, head_h = width * 0.30, height * 0.30
    top = height * 0.16
    # shoulders and shirt, then neck, head and hair
    draw.ellipse((cx - width * 0.48, height * 0.70, cx + width * 0.48, height * 1.35), fill=shirt)
    draw.rectangle((cx - head_w * 0.22, top + head_h * 0.8, cx + head_w * 0.22, height * 0.76), fill=skin)
    draw.ellipse((cx - head_w / 2, top, cx + head_w / 2, top + head_h), fill=skin)
    draw.chord((cx - head_w * 0.56, top - head_h * 0.08, cx + head_w * 0.56, top + head_h * 0.62), 180, 360, fill=hair)
    for _ in range(160):  # loose strands around the crown
        angle = rng.uniform(np.pi * 1.05, np.pi * 1.95)
        radius = rng.uniform(0.50, 0.68) * head_w
        x0, y0 = cx + np.cos(angle) * head_w * 0.45, top + head_h * 0.32 + np.sin(angle) * head_h * 0.45
        x1, y1 = cx + np.cos(angle) * radius, top + head_h * 0.32 + np.sin(angle) * radius * 1.1
        draw.line((x0, y0, x1, y1), fill=hair, width=1)
    image = image.filter(ImageFilter.GaussianBlur(0.8))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0.0, 2.0, (height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def calibration_portraits(height: int, width: int) -> list[np.ndarray]:
    """The three calibration portraits as (height, width, 3) uint8 arrays."""
    return [_portrait(height, width, palette, seed) for seed, palette in enumerate(_PALETTES)]
