"""Foreground colour estimation and alpha compositing.

Matting gives an alpha matte, but the colours of soft edge pixels (hair, motion blur) are still a mix of
the person and the *old* background. Re-using them as they are tints the new background's edges with the
old colour ("spill"). ``estimate_foreground`` recovers an approximate pure foreground colour first, with the
blur-fusion estimator of Forte & Pitié, "Approximate Fast Foreground Colour Estimation" (ICIP 2021).

Conventions: colours are float32 in [0, 1] (sRGB code value / 255), alpha is float32 (H, W) in [0, 1],
and every final image is uint8 rounded to nearest (``np.rint``), never truncated.
"""

from __future__ import annotations

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


def _means(
    alpha: np.ndarray,
    fg_weighted: np.ndarray,
    bg_weighted: np.ndarray,
    radius: int,
    fb: np.ndarray,
    bb: np.ndarray,
    scratch: np.ndarray,
) -> None:
    """Fill fb, bb with Fb = blur(F*a) / blur(a) and Bb = blur(B*(1-a)) / blur(1-a).

    Full-size temporaries cost about as much as the arithmetic, so every (H, W, 3) array is a buffer
    owned by the caller.
    """
    _box(fg_weighted, radius, dst=fb)
    _box(bg_weighted, radius, dst=bb)
    blur_a = np.maximum(_box(alpha, radius), np.float32(0.0))
    recip = np.add(blur_a, np.float32(EPS))
    np.divide(np.float32(1.0), recip, out=recip)
    fb *= _three(recip, dst=scratch)
    # The box blur is linear and preserves constants, so blur(1 - a) == 1 - blur(a): one blur saved.
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


def estimate_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Estimate the true foreground colour of every pixel, removing the old background's bleed into edges.

    ``image`` is (H, W, 3) float32 in [0, 1] (uint8 is converted), ``alpha`` (H, W) in [0, 1]. Returns
    float32 (H, W, 3) in [0, 1]; where alpha is 1 the result is the image (up to float rounding).

    Two blur-fusion passes: a large radius with F = B = image, then a small one from the first pass's
    F and blurred B.
    """
    img = np.ascontiguousarray(to_float(image))
    a = _check_pair(img, alpha)
    large, small = blur_radii(*a.shape)
    a3 = _three(a)
    a_image = np.multiply(img, a3)
    fb, bb, scratch = np.empty_like(img), np.empty_like(img), np.empty_like(img)
    work = np.subtract(img, a_image)

    # Pass 1: F = B = image, large radius.
    _means(a, a_image, work, large, fb, bb, scratch)
    _correct(fb, bb, a3, a_image, scratch)

    # Pass 2: the first pass's F (in fb) and blurred B (in bb), small radius. F*a is blurred into
    # `work` before fb receives the blurred B*(1-a).
    fb *= a3
    np.multiply(bb, a3, out=scratch)
    bb -= scratch
    _means(a, fb, bb, small, work, fb, scratch)
    _correct(work, fb, a3, a_image, scratch)
    return work


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
