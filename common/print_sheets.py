"""Print sheets: one ID photo tiled on a photo paper at its true print size.

Papers are 4x6 in (6寸), 3.5x5 in (5寸), 5x7 in (7寸) and A4, rendered at 300 dpi. The photos keep
their orientation; the paper is laid portrait or landscape, whichever holds more, and the photos are
spread with equal gaps between them and at the paper's edges (at least ``MIN_GAP_MM``, room for the
cut). Optional cut guides are thin grey lines along the photos' edges, drawn in the gaps only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from common.errors import SheetDoesNotFit, UnknownSheet
from common.imaging import encode_image

SHEET_DPI = 300.0
MM_PER_INCH = 25.4
MIN_GAP_MM = 2.0
GUIDE_COLOUR = (190, 190, 190)
SHEET_QUALITY = 95


@dataclass(frozen=True)
class Paper:
    id: str
    name: str
    width_mm: float  # portrait: width <= height
    height_mm: float


PAPERS: dict[str, Paper] = {
    "4x6": Paper("4x6", "4 x 6 in (6寸)", 4 * MM_PER_INCH, 6 * MM_PER_INCH),
    "3.5x5": Paper("3.5x5", "3.5 x 5 in (5寸)", 3.5 * MM_PER_INCH, 5 * MM_PER_INCH),
    "5x7": Paper("5x7", "5 x 7 in (7寸)", 5 * MM_PER_INCH, 7 * MM_PER_INCH),
    "a4": Paper("a4", "A4, 210 x 297 mm", 210.0, 297.0),
}
_ALIASES = {"6x4": "4x6", "6寸": "4x6", "5x3.5": "3.5x5", "5寸": "3.5x5", "7x5": "5x7", "7寸": "5x7"}


def get_paper(name: str) -> Paper:
    key = name.strip().lower() if isinstance(name, str) else ""
    key = _ALIASES.get(key, key)
    if key not in PAPERS:
        raise UnknownSheet(f"unknown print sheet {name!r}; offered: {', '.join(PAPERS)}")
    return PAPERS[key]


def mm_to_px(mm: float, dpi: float = SHEET_DPI) -> int:
    return round(mm / MM_PER_INCH * dpi)


@dataclass(frozen=True)
class SheetLayout:
    paper: Paper
    orientation: Literal["portrait", "landscape"]
    sheet_size: tuple[int, int]  # (width, height) px
    tile_size: tuple[int, int]  # (width, height) px of one photo
    columns: int
    rows: int
    positions: tuple[tuple[int, int], ...]  # top-left corner of each photo
    dpi: float = SHEET_DPI  # the resolution the sizes above are at

    @property
    def count(self) -> int:
        return self.columns * self.rows


def _fit(length: int, tile: int, min_gap: int) -> int:
    """How many tiles fit along ``length`` with gaps of at least ``min_gap`` between and around them."""
    return max(0, (length - min_gap) // (tile + min_gap))


def _spread(length: int, tile: int, n: int) -> list[int]:
    """Starts of ``n`` tiles along ``length`` with equal gaps (to the pixel) between and around them."""
    gap = (length - n * tile) / (n + 1)
    return [round(gap + i * (tile + gap)) for i in range(n)]


def layout_sheet(
    paper: Paper | str, photo_mm: tuple[float, float], *, dpi: float = SHEET_DPI, min_gap_mm: float = MIN_GAP_MM
) -> SheetLayout:
    """Where the photos go on ``paper``: the orientation that holds most (portrait on a tie)."""
    paper = get_paper(paper) if isinstance(paper, str) else paper
    tile = (mm_to_px(photo_mm[0], dpi), mm_to_px(photo_mm[1], dpi))
    gap = math.ceil(min_gap_mm / MM_PER_INCH * dpi)
    portrait = (mm_to_px(paper.width_mm, dpi), mm_to_px(paper.height_mm, dpi))
    best: SheetLayout | None = None
    for orientation, (width, height) in (("portrait", portrait), ("landscape", portrait[::-1])):
        columns, rows = _fit(width, tile[0], gap), _fit(height, tile[1], gap)
        if best is not None and columns * rows <= best.count:
            continue
        positions = tuple((x, y) for y in _spread(height, tile[1], rows) for x in _spread(width, tile[0], columns))
        best = SheetLayout(paper, orientation, (width, height), tile, columns, rows, positions, dpi)  # type: ignore[arg-type]
    assert best is not None
    if best.count == 0:
        raise SheetDoesNotFit(
            f"a {photo_mm[0]:g} x {photo_mm[1]:g} mm photo does not fit on {paper.name} with {min_gap_mm:g} mm gaps"
        )
    return best


@dataclass(frozen=True)
class Sheet:
    rgb: np.ndarray
    layout: SheetLayout

    @property
    def count(self) -> int:
        return self.layout.count


def render_sheet(
    photo: np.ndarray,
    photo_mm: tuple[float, float],
    paper: Paper | str,
    *,
    cut_guides: bool = True,
    dpi: float = SHEET_DPI,
    min_gap_mm: float = MIN_GAP_MM,
) -> Sheet:
    """Tile ``photo`` (uint8 (H, W, 3)) at its print size ``photo_mm`` on a white ``paper``."""
    layout = layout_sheet(paper, photo_mm, dpi=dpi, min_gap_mm=min_gap_mm)
    tile_w, tile_h = layout.tile_size
    if photo.shape[:2] != (tile_h, tile_w):
        shrinking = tile_w < photo.shape[1]
        photo = cv2.resize(photo, (tile_w, tile_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    width, height = layout.sheet_size
    sheet = np.full((height, width, 3), 255, dtype=np.uint8)
    if cut_guides:
        for x, y in layout.positions:
            for gx in (x - 1, x + tile_w):
                if 0 <= gx < width:
                    sheet[:, gx] = GUIDE_COLOUR
            for gy in (y - 1, y + tile_h):
                if 0 <= gy < height:
                    sheet[gy, :] = GUIDE_COLOUR
    for x, y in layout.positions:
        sheet[y : y + tile_h, x : x + tile_w] = photo
    return Sheet(rgb=sheet, layout=layout)


def encode_sheet(sheet: Sheet, *, quality: int = SHEET_QUALITY) -> bytes:
    """The sheet as a JPEG at the sheet's DPI."""
    return encode_image(sheet.rgb, "jpeg", quality=quality, dpi=(sheet.layout.dpi, sheet.layout.dpi))
