"""Foreground colour estimation and alpha compositing, in strips of rows so that memory stays bounded.

Matting gives an alpha matte, but the colours of soft edge pixels (hair, motion blur) are still a mix of
the person and the *old* background. Re-using them as they are tints the new background's edges with the
old colour ("spill"). The foreground colour is estimated first with the blur-fusion estimator of Forte &
Pitié, "Approximate Fast Foreground Colour Estimation" (ICIP 2021), but only where it matters: in tiles
that hold soft pixels. Elsewhere the matte is (within half a grey level) 0 or 1 and the photo's own colour
is the foreground.

``compose`` renders a photo's composite and cut-out a strip of rows at a time: at full resolution only the
photo (uint8), its matte (float32) and the outputs (uint8) are ever whole; everything else is the size of
a strip, or of the quarter-resolution large-radius pass. Its peak is a few bytes per pixel where a
whole-image float implementation needs about a hundred.

Conventions: colours are float32 in [0, 1] (sRGB code value / 255) or uint8, alpha is float32 (H, W) in
[0, 1], and every final image is uint8 rounded to nearest, never truncated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

# Box radii of the two blur-fusion passes, the paper's values, which suit photos of up to about 1 Mpx.
# Larger photos have proportionally wider soft edges, so the radii grow with the long side past
# REFERENCE_LONG_SIDE. They are not shrunk for smaller photos: a box wider than the soft band costs nothing
# (the box filter is O(1) per pixel) and, measured on synthetic edges, loses little, while one narrower
# than the band leaves much of the old background's colour in place.
LARGE_RADIUS = 90
SMALL_RADIUS = 6
REFERENCE_LONG_SIDE = 1024
# Keeps the normalised blurs finite where a neighbourhood has no foreground (or no background) weight.
EPS = 1e-5
# A matte value below this is transparent and above 1 - this opaque: within half a grey level of 0 or 1,
# so the estimate there moves no 8-bit output by more than one level. A sigmoid never gives exact 0 or 1.
SOFT_MARGIN = 1 / 510
# The large-radius pass runs on a copy shrunk this many times (area averages of PASS1_SCALE^2 blocks):
# a box of radius 90 or more is smooth, and its bilinear enlargement stays within a grey level.
PASS1_SCALE = 4
# Side of the tiles in which soft pixels are looked for (at least 4 small radii, so that the halo each
# tile needs stays a fraction of it), and the rows of the strips the outputs are rendered in.
MIN_TILE = 64
STRIP_ROWS = 256
# Adjacent soft tiles are estimated together (one halo for the run) up to about this many columns.
MAX_REGION_WIDTH = 1024

# Rows y0:y1 of a background at the photo's size: (rows, W, 3) uint8, or float32 in [0, 1].
BackgroundRows = Callable[[int, int], np.ndarray]


def to_float(rgb_uint8: np.ndarray) -> np.ndarray:
    """uint8 code values -> float32 in [0, 1] (value / 255); float input is only cast to float32."""
    arr = np.asarray(rgb_uint8)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32, copy=False)
    raise ValueError(f"expected a uint8 or float image, got dtype {arr.dtype}")


def to_uint8(values: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8, rounded to nearest (``np.rint``) and clipped, never truncated."""
    scaled = np.rint(np.asarray(values, dtype=np.float32) * np.float32(255.0))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _float_copy(image: np.ndarray) -> np.ndarray:
    """A float32 [0, 1] copy of a uint8 or float image region, safe to overwrite."""
    return to_float(image) if image.dtype == np.uint8 else np.array(image, dtype=np.float32)


def _check_pair(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Validate an (H, W, 3) image against its alpha; returns alpha as clipped float32 (H, W).

    A uint8 alpha is read as 0..255.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    a = to_float(alpha)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.shape != image.shape[:2]:
        raise ValueError(f"alpha shape {a.shape} does not match image shape {image.shape[:2]}")
    return np.ascontiguousarray(np.clip(a, 0.0, 1.0))


def _box(src: np.ndarray, radius: int, dst: np.ndarray | None = None) -> np.ndarray:
    """Normalised box blur of side 2*radius+1 (O(1) per pixel whatever the radius)."""
    k = 2 * radius + 1
    out = cv2.blur(src, (k, k), dst=dst)
    if dst is not None and out is not dst:  # OpenCV allocates anew when dst does not fit
        np.copyto(dst, out)
        return dst
    return out


def _three(x: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
    """(H, W) -> contiguous (H, W, 3); element-wise maths on it is much faster than broadcasting (H, W, 1)."""
    out = cv2.merge([x, x, x], dst=dst)
    if dst is not None and out is not dst:  # OpenCV allocates anew when dst does not fit
        np.copyto(dst, out)
        return dst
    return out


def _normalise(fb: np.ndarray, bb: np.ndarray, blur_a: np.ndarray, scratch: np.ndarray) -> None:
    """Turn the blurred F*a, B*(1-a) in fb, bb into the means Fb = blur(F*a) / blur(a) and
    Bb = blur(B*(1-a)) / blur(1-a), in place. The box blur is linear and preserves constants, so
    blur(1 - a) == 1 - blur(a): one blur saved."""
    np.maximum(blur_a, np.float32(0.0), out=blur_a)
    recip = np.add(blur_a, np.float32(EPS))
    np.divide(np.float32(1.0), recip, out=recip)
    fb *= _three(recip, dst=scratch)
    np.subtract(np.float32(1.0), blur_a, out=recip)
    np.maximum(recip, np.float32(0.0), out=recip)
    recip += np.float32(EPS)
    np.divide(np.float32(1.0), recip, out=recip)
    bb *= _three(recip, dst=scratch)
    # Means of values in [0, 1]; clipping only removes rounding noise where the weights are ~0.
    np.clip(bb, 0.0, 1.0, out=bb)


def _correct(fb: np.ndarray, bb: np.ndarray, a3: np.ndarray, a_image: np.ndarray, scratch: np.ndarray) -> None:
    """Turn fb into F = Fb + a*(I - a*Fb - (1-a)*Bb), in place, with no temporaries."""
    # a*Fb + (1-a)*Bb == a*(Fb - Bb) + Bb: the mixture the current estimates predict.
    np.subtract(fb, bb, out=scratch)
    scratch *= a3
    scratch += bb
    scratch *= a3
    fb -= scratch
    fb += a_image
    np.clip(fb, 0.0, 1.0, out=fb)


def blur_radii(height: int, width: int) -> tuple[int, int]:
    """The (large, small) blur-fusion radii for an image of this size."""
    scale = max(1.0, max(height, width) / REFERENCE_LONG_SIDE)
    return round(LARGE_RADIUS * scale), round(SMALL_RADIUS * scale)


def soft_mask(alpha: np.ndarray) -> np.ndarray:
    """Where the matte is soft: strictly between SOFT_MARGIN and 1 - SOFT_MARGIN (bool, alpha's shape)."""
    return (alpha > np.float32(SOFT_MARGIN)) & (alpha < np.float32(1.0 - SOFT_MARGIN))


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(np.int8), [0]))))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


class ForegroundEstimator:
    """Blur-fusion foreground colours of one photo, computed region by region where its matte is soft.

    Two passes: a large radius with F = B = image (on a copy shrunk ``pass1_scale`` times; 1 keeps it at
    full resolution, exactly the paper's), then a small one from the first pass's F and blurred B, at full
    resolution in each run of soft tiles and its halo. Where the matte is 0 or 1 the foreground is the
    photo itself.
    """

    def __init__(self, image: np.ndarray, alpha: np.ndarray, *, pass1_scale: int = PASS1_SCALE) -> None:
        if image.dtype not in (np.uint8, np.float32) or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 or float32 image, got {image.dtype} {image.shape}")
        if alpha.dtype != np.float32 or alpha.shape != image.shape[:2]:
            raise ValueError(f"expected a float32 alpha of shape {image.shape[:2]}, got {alpha.dtype} {alpha.shape}")
        self.image, self.alpha = image, alpha
        self.height, self.width = alpha.shape
        self.large, self.small = blur_radii(self.height, self.width)
        self.scale = pass1_scale
        self.tile = max(MIN_TILE, 4 * self.small)
        self._fb1, self._bb1 = self._first_pass()

    def _first_pass(self) -> tuple[np.ndarray, np.ndarray]:
        """The large-radius means Fb, Bb of the first pass, at 1/scale resolution: the photo is shrunk
        a strip at a time (edge pixels repeated up to whole blocks), so no full-size float array exists."""
        s, h, w = self.scale, self.height, self.width
        hs, ws = -(-h // s), -(-w // s)
        fg_sum = np.empty((hs, ws, 3), np.float32)
        bg_sum = np.empty((hs, ws, 3), np.float32)
        a_small = np.empty((hs, ws), np.float32)
        step = STRIP_ROWS - STRIP_ROWS % s
        for y0 in range(0, h, step):
            y1 = min(h, y0 + step)
            rows = -(-(y1 - y0) // s)
            img = _float_copy(self.image[y0:y1])
            a = self.alpha[y0:y1]
            pad = (0, rows * s - (y1 - y0), 0, ws * s - w)
            if pad != (0, 0, 0, 0):
                img = cv2.copyMakeBorder(img, *pad, cv2.BORDER_REPLICATE)
                a = cv2.copyMakeBorder(a, *pad, cv2.BORDER_REPLICATE)
            a_image = img * _three(a)
            img -= a_image
            out = slice(y0 // s, y0 // s + rows)
            if s == 1:
                fg_sum[out], bg_sum[out], a_small[out] = a_image, img, a
            else:
                fg_sum[out] = cv2.resize(a_image, (ws, rows), interpolation=cv2.INTER_AREA)
                bg_sum[out] = cv2.resize(img, (ws, rows), interpolation=cv2.INTER_AREA)
                a_small[out] = cv2.resize(a, (ws, rows), interpolation=cv2.INTER_AREA)
        radius = max(1, round(self.large / s))
        _box(fg_sum, radius, dst=fg_sum)
        _box(bg_sum, radius, dst=bg_sum)
        blur_a = _box(a_small, radius)
        _normalise(fg_sum, bg_sum, blur_a, np.empty_like(fg_sum))
        return fg_sum, bg_sum

    def _first_pass_region(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
        """The first pass's Fb, Bb over rows y0:y1 and columns x0:x1, enlarged bilinearly from the small
        copy. A crop with a one-pixel margin enlarged s times lands on the same sample positions as the
        whole copy enlarged, so regions agree where they overlap."""
        s = self.scale
        if s == 1:
            return self._fb1[y0:y1, x0:x1].copy(), self._bb1[y0:y1, x0:x1].copy()
        hs, ws = self._fb1.shape[:2]
        sy0, sy1 = max(0, y0 // s - 1), min(hs, -(-y1 // s) + 1)
        sx0, sx1 = max(0, x0 // s - 1), min(ws, -(-x1 // s) + 1)
        size = ((sx1 - sx0) * s, (sy1 - sy0) * s)
        rows, cols = slice(y0 - sy0 * s, y1 - sy0 * s), slice(x0 - sx0 * s, x1 - sx0 * s)
        out = []
        for means in (self._fb1, self._bb1):
            crop = np.ascontiguousarray(means[sy0:sy1, sx0:sx1])
            enlarged = cv2.resize(crop, size, interpolation=cv2.INTER_LINEAR)
            out.append(np.ascontiguousarray(enlarged[rows, cols]))
        return out[0], out[1]

    def regions(self, y0: int, y1: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """(x0, x1, F) for each run of soft tiles in rows y0:y1: F float32 (y1-y0, x1-x0, 3) in [0, 1]."""
        tile, w = self.tile, self.width
        flags = soft_mask(self.alpha[y0:y1])
        cols = -(-w // tile)
        if cols * tile != w:
            flags = np.pad(flags, ((0, 0), (0, cols * tile - w)))
        soft_tiles = flags.reshape(y1 - y0, cols, tile).any(axis=(0, 2))
        longest = max(1, MAX_REGION_WIDTH // tile)  # tiles in one region, so its size is bounded too
        for t0, t1 in _runs(soft_tiles):
            for c0 in range(t0, t1, longest):
                x0, x1 = c0 * tile, min(w, min(t1, c0 + longest) * tile)
                yield x0, x1, self._estimate(y0, y1, x0, x1)

    def _estimate(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The second pass over rows y0:y1, columns x0:x1, computed on the region grown by the small
        radius (cut at the photo's edges, where the box filter reflects as it does on the whole photo)."""
        r = self.small
        ry0, ry1, rx0, rx1 = max(0, y0 - r), min(self.height, y1 + r), max(0, x0 - r), min(self.width, x1 + r)
        img = _float_copy(self.image[ry0:ry1, rx0:rx1])
        a = np.ascontiguousarray(self.alpha[ry0:ry1, rx0:rx1])
        a3 = _three(a)
        a_image = np.multiply(img, a3)
        fb, bb = self._first_pass_region(ry0, ry1, rx0, rx1)
        scratch = img  # the photo itself is only needed as a_image from here on
        _correct(fb, bb, a3, a_image, scratch)
        # Second pass: the first pass's F (in fb) and blurred B (in bb), small radius.
        fb *= a3
        np.multiply(bb, a3, out=scratch)
        bb -= scratch
        _box(fb, r, dst=fb)
        _box(bb, r, dst=bb)
        _normalise(fb, bb, _box(a, r), scratch)
        _correct(fb, bb, a3, a_image, scratch)
        return fb[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0]


def _strips(height: int, rows: int = STRIP_ROWS) -> Iterator[tuple[int, int]]:
    for y0 in range(0, height, rows):
        yield y0, min(height, y0 + rows)


def estimate_foreground(image: np.ndarray, alpha: np.ndarray, *, pass1_scale: int = PASS1_SCALE) -> np.ndarray:
    """Estimate the true foreground colour of every pixel, removing the old background's bleed into edges.

    ``image`` is (H, W, 3) uint8 or float in [0, 1], ``alpha`` (H, W) in [0, 1]. Returns float32
    (H, W, 3) in [0, 1]; outside the tiles that hold soft matte values it is the image itself.
    (``compose`` renders outputs without this whole float array.)
    """
    img = image if image.dtype == np.uint8 else to_float(image)
    a = _check_pair(img, alpha)
    out = to_float(image)
    if np.shares_memory(out, image):
        out = out.copy()
    estimator = ForegroundEstimator(img, a, pass1_scale=pass1_scale)
    for y0, y1 in _strips(estimator.height, estimator.tile):
        for x0, x1, fg in estimator.regions(y0, y1):
            out[y0:y1, x0:x1] = fg
    return out


def composite(foreground: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Blend ``foreground`` over ``background`` by ``alpha`` at full resolution: out = F*a + B*(1-a), uint8.

    Colours are float32 in [0, 1] (H, W, 3); the result is rounded to nearest, not truncated.
    """
    fg = to_float(foreground)
    a = _check_pair(fg, alpha)[:, :, None]
    bg = to_float(background)
    if bg.shape != fg.shape:
        raise ValueError(f"background shape {bg.shape} does not match foreground shape {fg.shape}")
    out = fg * a
    out += bg * (np.float32(1.0) - a)
    return to_uint8(out)


def cutout(foreground: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 RGBA with straight (not premultiplied) alpha, for transparent output."""
    fg = to_float(foreground)
    a = _check_pair(fg, alpha)
    out = np.empty((*a.shape, 4), dtype=np.uint8)
    out[:, :, :3] = to_uint8(fg)
    out[:, :, 3] = to_uint8(a)
    return out


def _blend(fg: np.ndarray, bg: np.ndarray, a: np.ndarray) -> np.ndarray:
    """F*a + B*(1-a) as uint8 rounded to nearest, with OpenCV's per-pixel blend (one pass, no
    temporaries). uint8 F and B are blended in uint8; otherwise both in float32 in [0, 1]."""
    weights = np.subtract(np.float32(1.0), a)
    if fg.dtype == np.uint8 and bg.dtype == np.uint8:
        return cv2.blendLinear(fg, bg, a, weights)
    out = cv2.blendLinear(to_float(fg), to_float(bg), a, weights)
    return cv2.convertScaleAbs(out, alpha=255.0)  # values are >= 0: rounds to nearest and saturates


@dataclass(frozen=True)
class Composed:
    """The outputs ``compose`` was asked for: the composite (H, W, 3) and the cut-out (H, W, 4), uint8."""

    composite: np.ndarray | None
    rgba: np.ndarray | None


def compose(
    image: np.ndarray,
    alpha: np.ndarray,
    *,
    background: BackgroundRows | None,
    decontaminate: bool = True,
    rgba: bool = False,
    pass1_scale: int = PASS1_SCALE,
) -> Composed:
    """The composite over ``background`` (None: no composite) and, if asked, the RGBA cut-out of an
    (H, W, 3) uint8 photo and its (H, W) float32 matte, rendered a strip of rows at a time.

    With ``decontaminate`` the foreground colour is estimated in the tiles with soft matte values;
    elsewhere (and everywhere without it) the foreground is the photo."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.dtype}")
    a_full = _check_pair(image, alpha)
    height, width = a_full.shape
    estimator = ForegroundEstimator(image, a_full, pass1_scale=pass1_scale) if decontaminate else None
    out = np.empty((height, width, 3), np.uint8) if background is not None else None
    cut = np.empty((height, width, 4), np.uint8) if rgba else None
    # Strips of whole tiles: a strip is blended in one call, its tiles looked at one row of tiles at a time.
    tile = estimator.tile if estimator is not None else STRIP_ROWS
    for y0, y1 in _strips(height, tile * max(1, STRIP_ROWS // tile)):
        a = a_full[y0:y1]
        regions = []
        if estimator is not None:
            for t0, t1 in _strips(y1 - y0, tile):
                regions += [(y0 + t0, y0 + t1, x0, x1, fg) for x0, x1, fg in estimator.regions(y0 + t0, y0 + t1)]
        if out is not None and background is not None:
            bg = background(y0, y1)
            out[y0:y1] = _blend(image[y0:y1], bg, a)
            for r0, r1, x0, x1, fg in regions:
                rows = slice(r0 - y0, r1 - y0)
                out[r0:r1, x0:x1] = _blend(fg, bg[rows, x0:x1], np.ascontiguousarray(a[rows, x0:x1]))
        if cut is not None:
            cut[y0:y1, :, :3] = image[y0:y1]
            cut[y0:y1, :, 3] = to_uint8(a)
            for r0, r1, x0, x1, fg in regions:
                cut[r0:r1, x0:x1, :3] = to_uint8(fg)
    return Composed(out, cut)
