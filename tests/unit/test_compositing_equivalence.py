"""The strip-wise, tiled post-processing (``compose``) against the whole-image implementation it replaced.

The reference below is the previous implementation written out literally (whole-image float arrays, both
blur-fusion passes at full resolution, F*a + B*(1-a) rounded with ``np.rint``); it lives here only to be
compared against. Every 8-bit output must stay within one grey level of it.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from common.backgrounds import PRESETS, background_rows, parse_background
from common.compositing import (
    EPS,
    MAX_REGION_WIDTH,
    MIN_TILE,
    blur_radii,
    compose,
    composite,
    cutout,
    estimate_foreground,
    soft_mask,
    to_float,
    to_uint8,
)

# --- the reference: the whole-image implementation, as it was --------------------------------------


def _reference_step(
    image: np.ndarray, fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    k = 2 * radius + 1
    a = alpha[:, :, None]
    blur_a = np.maximum(cv2.blur(alpha, (k, k)), 0)[:, :, None]
    fb = cv2.blur(fg * a, (k, k)) / (blur_a + EPS)
    bb = np.clip(cv2.blur(bg * (1 - a), (k, k)) / (np.maximum(1 - blur_a, 0) + EPS), 0, 1)
    return np.clip(fb + a * (image - a * fb - (1 - a) * bb), 0, 1), bb


def reference_foreground(image8: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    image = to_float(image8)
    large, small = blur_radii(*alpha.shape)
    fg, bb = _reference_step(image, image, image, alpha, large)
    return _reference_step(image, fg, bb, alpha, small)[0]


def reference_blur_background(original: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    height, width = alpha.shape
    img = to_float(original)
    weight = np.clip(1 - alpha, 0, 1).astype(np.float32)
    weighted = img * weight[:, :, None]
    sigma = max(3.0, 0.02 * max(width, height))
    factor = max(1, math.floor(sigma / 4.0))
    if factor > 1:
        small = (max(1, round(width / factor)), max(1, round(height / factor)))
        weighted, weight, img = (cv2.resize(x, small, interpolation=cv2.INTER_AREA) for x in (weighted, weight, img))
    weighted, weight, plain = (cv2.GaussianBlur(x, (0, 0), sigma / factor) for x in (weighted, weight, img))
    weight = weight[:, :, None]
    trust = np.clip(weight / 1e-3, 0, 1)
    out = np.clip(plain + trust * (weighted / (weight + 1e-6) - plain), 0, 1).astype(np.float32)
    if factor > 1:
        out = cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR)
    return out


# --- the tiles against the whole-image formulas ---------------------------------------------------


@pytest.mark.parametrize("shape", [(200, 260), (300, 211)])
def test_estimate_foreground_matches_literal_formulas_where_soft(shape: tuple[int, int]) -> None:
    """With the large-radius pass at full resolution, the tiled estimate is the whole-image formula's
    at every soft pixel (tiles and halos change nothing there), and the photo itself outside soft tiles."""
    rng = np.random.default_rng(1234)
    image = rng.random((*shape, 3), dtype=np.float32)
    mask = np.zeros(shape, dtype=np.float32)
    mask[shape[0] // 2 :, shape[1] // 2 :] = 1.0  # its top left tile holds no soft value
    alpha = cv2.GaussianBlur(mask, (0, 0), 3)
    large, small = blur_radii(*shape)
    fg, bb = _reference_step(image, image, image, alpha, large)
    fg, _ = _reference_step(image, fg, bb, alpha, small)
    out = estimate_foreground(image, alpha, pass1_scale=1)
    soft = soft_mask(alpha)
    assert 0.05 < soft.mean() < 0.6
    np.testing.assert_allclose(out[soft], fg[soft], atol=2e-5)
    tiles = np.zeros((-(-shape[0] // MIN_TILE), -(-shape[1] // MIN_TILE)), dtype=bool)
    ys, xs = np.nonzero(soft)
    tiles[ys // MIN_TILE, xs // MIN_TILE] = True
    outside = ~np.kron(tiles, np.ones((MIN_TILE, MIN_TILE), dtype=bool))[: shape[0], : shape[1]]
    assert outside.any()
    np.testing.assert_array_equal(out[outside], image[outside])


# --- cases ----------------------------------------------------------------------------------------


def _fixture_case(face_fixtures: Path, *, trained_like: bool) -> tuple[np.ndarray, np.ndarray]:
    """test2.jpg and the alpha of its cut-out, a real matte; ``trained_like`` keeps it off exact 0 and 1
    the way a network's sigmoid does."""
    image = np.asarray(Image.open(face_fixtures / "test2.jpg").convert("RGB"))
    alpha = np.asarray(Image.open(face_fixtures / "test2.cutout.png"))[:, :, 3].astype(np.float32) / 255
    if trained_like:
        alpha = np.clip(alpha, 1e-3, 1 - 1e-3)
    return np.ascontiguousarray(image), alpha


def _synthetic_case(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Textured photo and a soft blob matte with thin strands, of any size."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    blob = np.hypot((yy - 0.6 * height) / (0.35 * height), (xx - 0.5 * width) / (0.3 * width))
    alpha = np.clip((1.1 - blob) * 4, 0, 1)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.line(alpha, (x0, y0), (x1, y1), float(rng.uniform(0.3, 0.9)), 1, cv2.LINE_AA)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.5)
    noise = cv2.GaussianBlur(rng.random((height, width, 3), dtype=np.float32), (0, 0), 2)
    image = to_uint8(np.clip(0.3 + 0.4 * noise + 0.2 * np.sin(xx / 17)[:, :, None], 0, 1))
    return image, np.clip(alpha, 0, 1).astype(np.float32)


def _assert_outputs_match(image: np.ndarray, alpha: np.ndarray, background: str, picture: np.ndarray | None) -> None:
    height, width = alpha.shape
    spec = parse_background(background, image=picture)
    rows = background_rows(spec, size=(width, height), original=image, alpha=alpha)
    new = compose(image, alpha, background=rows, rgba=True)

    foreground = reference_foreground(image, alpha)
    blur = background == "blur"
    canvas = reference_blur_background(image, alpha) if blur else to_float(rows(0, height).copy())
    old_composite = composite(foreground, alpha, canvas)
    old_cutout = cutout(foreground, alpha)

    assert new.composite is not None and new.rgba is not None
    diff = np.abs(new.composite.astype(np.int16) - old_composite)
    assert diff.max() <= 1, f"composite differs by {diff.max()} levels"
    np.testing.assert_array_equal(new.rgba[:, :, 3], old_cutout[:, :, 3])
    # The cut-out's colour counts as much as its alpha shows it (premultiplied): within one level, plus
    # the half level that rounding each straight colour to 8 bits adds once premultiplied.
    a = alpha[:, :, None]
    seen = np.abs(new.rgba[:, :, :3].astype(np.float32) - old_cutout[:, :, :3]) * a
    assert (seen <= 1.0 + a).all(), f"cut-out colour differs by {seen.max():.2f} premultiplied levels"
    estimated = estimate_foreground(image, alpha)
    premultiplied = np.abs(estimated - foreground) * a * 255
    assert premultiplied.max() <= 1.0, f"foreground differs by {premultiplied.max():.2f} premultiplied levels"


@pytest.mark.parametrize("trained_like", [False, True])
@pytest.mark.parametrize("background", ["blue", "#f0e0d0", "blur", "image"])
def test_fixture_outputs_within_one_level(face_fixtures: Path, trained_like: bool, background: str) -> None:
    image, alpha = _fixture_case(face_fixtures, trained_like=trained_like)
    picture = np.asarray(Image.open(face_fixtures / "test1.jpg").convert("RGB")) if background == "image" else None
    _assert_outputs_match(image, alpha, background, picture)


def test_fixture_at_1200x1600_within_one_level(face_fixtures: Path) -> None:
    """Past the reference long side the radii grow (141 and 9 here), and the large pass is shrunk 4x."""
    image, alpha = _fixture_case(face_fixtures, trained_like=True)
    image = cv2.resize(image, (1200, 1600), interpolation=cv2.INTER_CUBIC)
    alpha = np.clip(cv2.resize(alpha, (1200, 1600), interpolation=cv2.INTER_LINEAR), 0, 1)
    _assert_outputs_match(image, alpha, "red", None)


@pytest.mark.parametrize(
    ("height", "width", "seed"),
    [(257, 389, 1), (1030, 37, 2), (41, 1301, 3), (777, 515, 4)],
)
def test_synthetic_outputs_within_one_level(height: int, width: int, seed: int) -> None:
    image, alpha = _synthetic_case(height, width, seed)
    assert ((alpha > 0.01) & (alpha < 0.99)).any()
    _assert_outputs_match(image, alpha, "green", None)
    _assert_outputs_match(image, alpha, "blur", None)


def test_a_matte_soft_everywhere_within_one_level() -> None:
    """Untrained weights give a matte with no 0 or 1 anywhere: every tile is estimated, in regions cut to
    ``MAX_REGION_WIDTH`` across a photo wider than that."""
    image, _ = _synthetic_case(300, 2 * MAX_REGION_WIDTH + 77, 7)
    rng = np.random.default_rng(7)
    alpha = cv2.GaussianBlur(rng.random(image.shape[:2], dtype=np.float32), (0, 0), 4) * 0.8 + 0.1
    assert soft_mask(alpha).all()
    _assert_outputs_match(image, alpha, "blue", None)


def test_without_decontamination_is_the_plain_blend() -> None:
    image, alpha = _synthetic_case(300, 200, 5)
    rows = background_rows(parse_background("white"), size=(200, 300))
    out = compose(image, alpha, background=rows, decontaminate=False, rgba=True)
    white = np.ones((300, 200, 3), dtype=np.float32)
    assert out.composite is not None and out.rgba is not None
    assert np.abs(out.composite.astype(np.int16) - composite(to_float(image), alpha, white)).max() <= 1
    np.testing.assert_array_equal(out.rgba, cutout(to_float(image), alpha))


def test_opaque_and_transparent_regions_are_exact() -> None:
    """Where the matte is 0 or 1 the composite is the background's or the photo's own colour, exactly."""
    image, _ = _synthetic_case(400, 300, 6)
    alpha = np.zeros((400, 300), dtype=np.float32)
    alpha[150:, 80:220] = 1.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), 2)
    out = compose(image, alpha, background=background_rows(parse_background("red"), size=(300, 400)))
    assert out.composite is not None
    assert (alpha == 0).any() and (alpha == 1).any()
    assert (out.composite[alpha == 0] == np.array(PRESETS["red"], dtype=np.uint8)).all()
    np.testing.assert_array_equal(out.composite[alpha == 1], image[alpha == 1])
