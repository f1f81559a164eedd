"""Every image that decodes must encode: a noisy, detailed photo whose JPEG is larger than one byte
per pixel at high quality (4:4:4, optimized Huffman tables) once failed with a broken data stream."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from common.imaging import encode_image


@pytest.mark.parametrize("quality", [1, 50, 89, 90, 92, 95, 100])
def test_high_entropy_images_encode_at_every_quality(quality: int) -> None:
    noise = np.random.default_rng(quality).integers(0, 256, (256, 320, 3), dtype=np.uint8)
    data = encode_image(noise, "jpeg", quality=quality, dpi=(300, 300))
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    assert decoded.size == (320, 256) and decoded.format == "JPEG"
    assert tuple(round(v) for v in decoded.info["dpi"]) == (300, 300)
    if quality >= 90:
        assert len(data) > 256 * 320  # the case that failed: more than one byte per pixel
        difference = np.abs(np.asarray(decoded, dtype=np.int16) - noise).mean()
        assert difference < 16
