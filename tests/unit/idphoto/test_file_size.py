"""JPEG size targets: the highest quality that fits, minimums met by quality, typed errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from common.errors import FileSizeUnreachable
from common.file_size import encode_jpeg_within, max_bytes, min_bytes
from common.imaging import encode_image


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:531, 0:413]
    base = np.stack([x * 0.4 + 60, y * 0.3 + 50, (x + y) * 0.2 + 40], axis=2)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _size(rgb: np.ndarray, q: int) -> int:
    return len(encode_image(rgb, "jpeg", quality=q, dpi=(300, 300)))


@pytest.mark.parametrize("between", [(50, 51), (71, 72), (88, 89)])
def test_max_kb_gets_the_highest_quality_that_fits(photo: np.ndarray, between: tuple[int, int]) -> None:
    low, high = (_size(photo, q) for q in between)
    assert low < high
    max_kb = (low + high) / 2 / 1000
    sized = encode_jpeg_within(photo, dpi=(300, 300), max_kb=max_kb)
    assert len(sized.data) <= max_bytes(max_kb)
    assert _size(photo, sized.quality + 1) > max_bytes(max_kb)
    assert sized.data == encode_image(photo, "jpeg", quality=sized.quality, dpi=(300, 300))
    assert sized.encodings < 12  # a search, not a ladder over every quality


def test_the_file_keeps_its_dpi(photo: np.ndarray) -> None:
    sized = encode_jpeg_within(photo, dpi=(350, 350), max_kb=60)
    with Image.open(io.BytesIO(sized.data)) as im:
        assert im.format == "JPEG"
        assert tuple(round(v) for v in im.info["dpi"]) == (350, 350)


def test_an_unreachable_maximum_is_a_typed_error(photo: np.ndarray) -> None:
    smallest = _size(photo, 30)
    with pytest.raises(FileSizeUnreachable) as caught:
        encode_jpeg_within(photo, max_kb=(smallest - 500) / 1000, min_quality=30)
    assert caught.value.code == "file_size_unreachable" and caught.value.http_status == 422


def test_a_minimum_is_met_by_quality_never_by_padding(photo: np.ndarray) -> None:
    at_default = _size(photo, 80)
    min_kb = (at_default + 0.5 * (_size(photo, 90) - at_default)) / 1024
    sized = encode_jpeg_within(photo, min_kb=min_kb, quality=80)
    assert len(sized.data) >= min_bytes(min_kb)
    assert _size(photo, sized.quality - 1) < min_bytes(min_kb)
    # The file is exactly the encoder's output at that quality: nothing appended after the image.
    assert sized.data == encode_image(photo, "jpeg", quality=sized.quality)
    assert sized.data.endswith(b"\xff\xd9")


def test_an_unreachable_minimum_is_a_typed_error() -> None:
    flat = np.full((100, 100, 3), 200, np.uint8)
    with pytest.raises(FileSizeUnreachable, match="not met by padding"):
        encode_jpeg_within(flat, min_kb=500)


def test_a_window_between_minimum_and_maximum(photo: np.ndarray) -> None:
    sized = encode_jpeg_within(photo, max_kb=_size(photo, 70) / 1000, min_kb=_size(photo, 40) / 1024)
    assert sized.quality >= 70
    with pytest.raises(FileSizeUnreachable):
        encode_jpeg_within(photo, max_kb=_size(photo, 40) / 1000, min_kb=_size(photo, 70) / 1024)


def test_without_limits_the_quality_is_kept(photo: np.ndarray) -> None:
    assert encode_jpeg_within(photo, quality=77).quality == 77


def test_a_minimum_above_quality_95_is_reached_under_a_maximum_too(photo: np.ndarray) -> None:
    """Quality 95 is the ceiling when only a maximum is given; a minimum that 95 falls short of is met
    higher up, with or without a maximum (as with a minimum alone)."""
    at_95, at_96 = _size(photo, 95), _size(photo, 96)
    assert at_95 < at_96
    min_kb = (at_95 + at_96) / 2 / 1024
    alone = encode_jpeg_within(photo, min_kb=min_kb)
    windowed = encode_jpeg_within(photo, min_kb=min_kb, max_kb=2 * _size(photo, 100) / 1000)
    assert alone.quality == windowed.quality == 96
    assert len(windowed.data) >= min_bytes(min_kb)
    assert encode_jpeg_within(photo, max_kb=2 * _size(photo, 100) / 1000).quality == 95  # no minimum: 95
