"""Print sheets: counts per paper and spec, even gaps, the better orientation, cut guides, refusals."""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
from PIL import Image

from common.errors import SheetDoesNotFit, UnknownSheet
from common.id_specs import get_spec, list_specs
from common.print_sheets import (
    GUIDE_COLOUR,
    MIN_GAP_MM,
    PAPERS,
    SHEET_DPI,
    encode_sheet,
    get_paper,
    layout_sheet,
    mm_to_px,
    render_sheet,
)

# Worked by hand: tiles of round(mm / 25.4 * 300) px, gaps of at least 24 px (2 mm) around each.
# e.g. 35x45 mm (413x531 px) on 4x6 in (1200x1800 px): portrait 2x3 = 6, landscape (1800 wide) 4x2 = 8.
EXPECTED = [
    ("icao-35x45", "4x6", 8, "landscape"),
    ("icao-35x45", "3.5x5", 4, "portrait"),
    ("icao-35x45", "5x7", 9, "portrait"),
    ("icao-35x45", "a4", 30, "portrait"),
    ("us-visa", "4x6", 2, "portrait"),
    ("us-visa", "5x7", 6, "portrait"),
    ("cn-1inch", "4x6", 12, "portrait"),
    ("cn-id-card", "3.5x5", 9, "portrait"),
]


@pytest.mark.parametrize(("spec_id", "paper", "count", "orientation"), EXPECTED)
def test_counts_per_paper_and_spec(spec_id: str, paper: str, count: int, orientation: str) -> None:
    layout = layout_sheet(paper, get_spec(spec_id).print_size_mm)
    assert (layout.count, layout.orientation) == (count, orientation)


@pytest.mark.parametrize("paper", list(PAPERS))
@pytest.mark.parametrize("spec", list_specs(), ids=lambda s: s.id)
def test_every_layout_is_tight_even_and_inside(paper: str, spec) -> None:
    layout = layout_sheet(paper, spec.print_size_mm)
    width, height = layout.sheet_size
    tw, th = layout.tile_size
    gap = math.ceil(MIN_GAP_MM / 25.4 * SHEET_DPI)
    xs = sorted({x for x, _ in layout.positions})
    ys = sorted({y for _, y in layout.positions})
    assert len(xs) * len(ys) == layout.count == len(layout.positions)
    gaps_x = [xs[0]] + [b - a - tw for a, b in itertools.pairwise(xs)] + [width - xs[-1] - tw]
    gaps_y = [ys[0]] + [b - a - th for a, b in itertools.pairwise(ys)] + [height - ys[-1] - th]
    for gaps in (gaps_x, gaps_y):
        assert min(gaps) >= gap
        assert max(gaps) - min(gaps) <= 1  # even, to the pixel
    # One more photo across or down would not fit in this orientation,
    assert (len(xs) + 1) * tw + (len(xs) + 2) * gap > width
    assert (len(ys) + 1) * th + (len(ys) + 2) * gap > height
    # and the other orientation holds no more.
    cols = (height - gap) // (tw + gap)
    rows = (width - gap) // (th + gap)
    assert cols * rows <= layout.count


def test_the_sheet_shows_the_photos_and_guides_only_in_the_gaps() -> None:
    spec = get_spec("icao-35x45")
    photo = np.full((531, 413, 3), (10, 120, 200), np.uint8)
    sheet = render_sheet(photo, spec.print_size_mm, "4x6", cut_guides=True)
    assert sheet.rgb.shape == (1200, 1800, 3)
    for x, y in sheet.layout.positions:
        assert np.all(sheet.rgb[y : y + 531, x : x + 413] == (10, 120, 200))
        assert np.all(sheet.rgb[y : y + 531, x - 1] == GUIDE_COLOUR)
    plain = render_sheet(photo, spec.print_size_mm, "4x6", cut_guides=False)
    assert not np.any(np.all(plain.rgb == GUIDE_COLOUR, axis=2))
    with Image.open(io.BytesIO(encode_sheet(sheet))) as im:
        assert im.size == (1800, 1200)
        assert tuple(round(v) for v in im.info["dpi"]) == (300, 300)


def test_a_photo_at_another_dpi_is_printed_at_its_true_size() -> None:
    spec = get_spec("cn-id-card")  # 358x441 px at 350 dpi, 26x32 mm
    photo = np.zeros((441, 358, 3), np.uint8)
    sheet = render_sheet(photo, spec.print_size_mm, "4x6")
    assert sheet.layout.tile_size == (mm_to_px(26), mm_to_px(32))


def test_a_sheet_that_fits_nothing_is_a_typed_error() -> None:
    with pytest.raises(SheetDoesNotFit) as caught:
        layout_sheet("3.5x5", (120.0, 160.0))
    assert caught.value.code == "sheet_does_not_fit"


def test_papers_by_name() -> None:
    assert get_paper("A4") is PAPERS["a4"]
    assert get_paper("6寸") is PAPERS["4x6"]
    with pytest.raises(UnknownSheet):
        get_paper("letter")


def test_a_sheet_is_encoded_at_the_resolution_it_was_laid_out_for() -> None:
    photo = np.full((531, 413, 3), 128, np.uint8)
    sheet = render_sheet(photo, (35.0, 45.0), "4x6", dpi=150)
    assert sheet.rgb.shape[:2] == (900, 600) or sheet.rgb.shape[:2] == (600, 900)  # 4 x 6 in at 150 dpi
    with Image.open(io.BytesIO(encode_sheet(sheet))) as im:
        assert tuple(round(v) for v in im.info["dpi"]) == (150, 150)
