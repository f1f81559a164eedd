"""Parsing the background option and rendering each kind at the photo's size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from common.backgrounds import (
    PRESETS,
    BackgroundKind,
    BackgroundSpec,
    blur_sigma,
    cover_fit,
    parse_background,
    render_background,
)
from common.compositing import to_float, to_uint8
from common.errors import InvalidOption

RED = (220, 30, 30)
GREEN = (20, 200, 40)
BLUE = (30, 60, 200)


def _solid(h: int, w: int, color: tuple[int, int, int]) -> np.ndarray:
    out = np.empty((h, w, 3), dtype=np.uint8)
    out[:] = color
    return out


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "color"),
    [("red", (208, 0, 0)), ("blue", (0, 143, 213)), ("green", (0, 134, 134)), ("white", (255, 255, 255))],
)
def test_presets_have_exact_colours(name: str, color: tuple[int, int, int]) -> None:
    assert PRESETS[name] == color
    spec = parse_background(name)
    assert spec == BackgroundSpec(BackgroundKind.COLOR, color=color)
    rendered = render_background(spec, size=(5, 4))
    assert (to_uint8(rendered) == color).all()


def test_parsing_ignores_case_and_surrounding_spaces() -> None:
    assert parse_background("  BLUE\n").color == PRESETS["blue"]
    assert parse_background(" Transparent ").kind is BackgroundKind.TRANSPARENT
    assert parse_background("BLUR").kind is BackgroundKind.BLUR


@pytest.mark.parametrize(
    ("text", "color"),
    [
        ("#0a0B0c", (10, 11, 12)),
        ("#abc", (170, 187, 204)),
        ("#ABC", (170, 187, 204)),
        ("#FFFFFF", (255, 255, 255)),
    ],
)
def test_hex_colours(text: str, color: tuple[int, int, int]) -> None:
    spec = parse_background(text)
    assert spec.kind is BackgroundKind.COLOR
    assert spec.color == color


@pytest.mark.parametrize("text", ["#12", "#ggg", "purple", "", "   ", "0a0b0c", "#1234", "#1234567", "# abc"])
def test_bad_specs_are_invalid_options(text: str) -> None:
    with pytest.raises(InvalidOption) as info:
        parse_background(text)
    assert info.value.code == "invalid_option"
    assert "#RRGGBB" in info.value.message
    assert "transparent" in info.value.message


def test_image_needs_an_image() -> None:
    with pytest.raises(InvalidOption) as info:
        parse_background("image")
    assert info.value.code == "invalid_option"


def test_image_spec_keeps_the_image_and_stays_hashable() -> None:
    picture = _solid(4, 6, RED)
    spec = parse_background("Image", image=picture)
    assert spec.kind is BackgroundKind.IMAGE
    assert spec.image is picture
    assert spec == BackgroundSpec(BackgroundKind.IMAGE, image=_solid(2, 2, BLUE))
    hash(spec)
    assert "image=" not in repr(spec)


def test_image_must_be_uint8_rgb() -> None:
    for bad in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.float32)):
        with pytest.raises(InvalidOption):
            parse_background("image", image=bad)


def test_kind_is_a_string() -> None:
    assert BackgroundKind.BLUR == "blur"
    assert BackgroundSpec("transparent").kind is BackgroundKind.TRANSPARENT
    with pytest.raises(InvalidOption):
        BackgroundSpec("plaid")
    with pytest.raises(InvalidOption):
        BackgroundSpec(BackgroundKind.COLOR, color=(0, 0, 256))


# --- rendering: shapes and kinds -----------------------------------------------------------------


def test_every_renderable_kind_has_the_canvas_shape_and_float32() -> None:
    width, height = 30, 20
    original = _solid(height, width, BLUE)
    alpha = np.zeros((height, width), dtype=np.float32)
    specs = [
        parse_background("white"),
        parse_background("#123456"),
        parse_background("image", image=_solid(7, 50, GREEN)),
        parse_background("blur"),
    ]
    for spec in specs:
        out = render_background(spec, size=(width, height), original=original, alpha=alpha)
        assert out.shape == (height, width, 3), spec.kind
        assert out.dtype == np.float32, spec.kind
        assert out.min() >= 0.0
        assert out.max() <= 1.0


def test_transparent_cannot_be_rendered() -> None:
    with pytest.raises(InvalidOption):
        render_background(parse_background("transparent"), size=(4, 4))


def test_blur_needs_the_original_and_alpha() -> None:
    with pytest.raises(ValueError):
        render_background(parse_background("blur"), size=(4, 4))
    with pytest.raises(ValueError):
        render_background(
            parse_background("blur"),
            size=(4, 4),
            original=_solid(5, 4, BLUE),
            alpha=np.zeros((5, 4), np.float32),
        )


# --- rendering: cover-fit ------------------------------------------------------------------------


def test_cover_fit_crops_a_wide_image_symmetrically() -> None:
    picture = np.concatenate([_solid(100, 100, RED), _solid(100, 100, BLUE)], axis=1)  # 200 wide
    out = render_background(parse_background("image", image=picture), size=(100, 100))
    assert out.shape == (100, 100, 3)
    np.testing.assert_array_equal(to_uint8(out[:, :50]), _solid(100, 50, RED))
    np.testing.assert_array_equal(to_uint8(out[:, 50:]), _solid(100, 50, BLUE))


def test_cover_fit_keeps_the_middle_when_shrinking() -> None:
    # 2:1 image in three bands; on a 1:1 canvas only the middle (green) band remains.
    picture = np.concatenate([_solid(200, 100, RED), _solid(200, 200, GREEN), _solid(200, 100, BLUE)], axis=1)
    out = cover_fit(picture, (50, 50))
    assert out.shape == (50, 50, 3)
    np.testing.assert_array_equal(out, _solid(50, 50, GREEN))


def test_cover_fit_keeps_the_middle_when_enlarging() -> None:
    # 1:2 (tall) image: top and bottom quarters are cut off on a square canvas.
    picture = np.concatenate([_solid(5, 10, RED), _solid(10, 10, GREEN), _solid(5, 10, BLUE)], axis=0)
    out = cover_fit(picture, (40, 40))
    assert out.shape == (40, 40, 3)
    # Cubic interpolation reaches two source pixels (8 output rows) across the cut bands.
    np.testing.assert_array_equal(out[8:-8], _solid(24, 40, GREEN))
    assert (out[:, :, 1] > 128).all()


@pytest.mark.parametrize(
    ("src", "size"),
    [((127, 333), (101, 77)), ((50, 3), (640, 480)), ((999, 1), (7, 9)), ((480, 640), (640, 481))],
)
def test_cover_fit_always_gives_exactly_the_canvas(src: tuple[int, int], size: tuple[int, int]) -> None:
    picture = np.random.default_rng(3).integers(0, 256, (*src, 3), dtype=np.uint8)
    width, height = size
    assert cover_fit(picture, size).shape == (height, width, 3)


def test_cover_fit_same_size_is_untouched() -> None:
    picture = np.random.default_rng(4).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(cover_fit(picture, (16, 12)), picture)


# --- rendering: blur -----------------------------------------------------------------------------


def _person_scene(height: int, width: int) -> tuple[np.ndarray, np.ndarray, slice]:
    """A blue backdrop with a red opaque 'person' block standing at the bottom centre."""
    original = _solid(height, width, BLUE)
    alpha = np.zeros((height, width), dtype=np.float32)
    cols = slice(width * 5 // 16, width * 11 // 16)
    original[height // 6 :, cols] = RED
    alpha[height // 6 :, cols] = 1.0
    return original, alpha, cols


@pytest.mark.parametrize(("height", "width"), [(120, 160), (600, 800)])
def test_blur_is_not_tinted_by_the_person(height: int, width: int) -> None:
    original, alpha, cols = _person_scene(height, width)
    out = render_background(parse_background("blur"), size=(width, height), original=original, alpha=alpha)

    sigma = blur_sigma(width, height)
    plain = cv2.GaussianBlur(to_float(original), (0, 0), sigma)
    # A band of background pixels just left and right of the person, within about two sigmas.
    reach = max(2, round(2 * sigma))
    rows = slice(height // 3, height - 1)
    near = np.concatenate(
        [out[rows, cols.start - reach : cols.start], out[rows, cols.stop : cols.stop + reach]], axis=1
    )
    near_plain = np.concatenate(
        [plain[rows, cols.start - reach : cols.start], plain[rows, cols.stop : cols.stop + reach]], axis=1
    )
    blue = to_float(np.array(BLUE, dtype=np.uint8))
    assert np.abs(near - blue).max() < 1 / 255
    # A plain blur of the same photo is visibly reddened there.
    assert (near_plain[:, :, 0] - blue[0]).mean() > 20 / 255


def test_blur_smooths_the_background() -> None:
    height, width = 90, 120
    yy, xx = np.mgrid[0:height, 0:width]
    checker = np.where(((yy // 4 + xx // 4) % 2 == 0)[:, :, None], 230, 20).astype(np.uint8).repeat(3, axis=2)
    alpha = np.zeros((height, width), dtype=np.float32)
    out = render_background(parse_background("blur"), size=(width, height), original=checker, alpha=alpha)
    assert out[10:-10, 10:-10].std() < 0.1 * to_float(checker).std()
    assert abs(out.mean() - to_float(checker).mean()) < 0.02
