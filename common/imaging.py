"""Decoding and encoding of images with Pillow.

Input images arrive in many formats and pixel modes; everything downstream (matting, compositing)
wants one thing: an sRGB ``(H, W, 3)`` uint8 array the right way up, plus the source transparency
when there was any. Limits on size are checked from the header, before a single pixel is decoded,
so a small file that claims huge dimensions costs nothing.
"""

from __future__ import annotations

import io
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageCms, UnidentifiedImageError

from common.errors import CorruptImage, ImageTooLarge, ImageTooSmall, InvalidOption, UnsupportedImage

ACCEPTED_FORMATS: frozenset[str] = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF"})

OUTPUT_MEDIA_TYPES: dict[str, str] = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}

# Formats tried by Image.open, in order. MPO files are recognised by the JPEG opener, so MPO needs
# no entry of its own; restricting the list keeps Pillow's other parsers away from untrusted bytes.
_OPEN_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

_FORMAT_ALIASES: dict[str, str] = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png", "webp": "webp"}

_PNG_COMPRESS_LEVEL = 6

# EXIF orientation -> numpy operations that bring the stored pixels upright (same meaning as
# Pillow's ImageOps.exif_transpose). Orientations 5-8 swap width and height.
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


@dataclass(frozen=True)
class ImageInfo:
    """What a header probe reveals; width and height are after EXIF orientation."""

    format: str
    width: int
    height: int


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """An upright sRGB image, its source transparency (if any) and its resolution metadata.

    ``rgb`` is composited over white where the source was transparent, so the matting model sees
    a plain background there; ``alpha`` keeps the source transparency for the final composite.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    dpi: tuple[float, float] | None
    source_format: str

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be an (H, W, 3) uint8 array, got {self.rgb.shape} {self.rgb.dtype}")
        if self.alpha is not None and self.alpha.shape != self.rgb.shape[:2]:
            raise ValueError(f"alpha shape {self.alpha.shape} does not match rgb {self.rgb.shape[:2]}")

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


# --- Pillow's own decompression-bomb limit ----------------------------------------------------

_pillow_limit_lock = threading.Lock()
_active_limits: list[int] = []
_saved_pillow_limit: int | None = None


@contextmanager
def _pillow_limit_at_least(max_pixels: int) -> Iterator[None]:
    """Raise Pillow's bomb threshold to our own limit while we open and decode.

    Our limit may exceed Pillow's default, and Pillow would otherwise warn about (or refuse)
    images we accept. The threshold is raised, never lowered, only while at least one decode is
    running, and restored afterwards; concurrent decodes share it through a reference count.
    """
    global _saved_pillow_limit
    with _pillow_limit_lock:
        if not _active_limits:
            _saved_pillow_limit = Image.MAX_IMAGE_PIXELS
        _active_limits.append(max_pixels)
        _apply_pillow_limit()
    try:
        yield
    finally:
        with _pillow_limit_lock:
            _active_limits.remove(max_pixels)
            if _active_limits:
                _apply_pillow_limit()
            else:
                Image.MAX_IMAGE_PIXELS = _saved_pillow_limit


def _apply_pillow_limit() -> None:
    """Set Pillow's threshold to the largest of its saved value and every active limit."""
    if _saved_pillow_limit is None:
        Image.MAX_IMAGE_PIXELS = None
    else:
        Image.MAX_IMAGE_PIXELS = max(_saved_pillow_limit, *_active_limits)


# --- opening and header checks --------------------------------------------------------------


def exif_orientation(im: Image.Image) -> int:
    """EXIF orientation from the header metadata (1 when absent or unreadable).

    The base ``Image.getexif`` is called on purpose: PNG's override loads the whole image to
    look for an eXIf chunk after the pixel data, which would defeat a header-only probe.
    """
    try:
        value = Image.Image.getexif(im).get(ExifTags.Base.Orientation, 1)
        orientation = int(value)
    except Exception:
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def _reported_upright(im: Image.Image) -> bool:
    """Whether Pillow already gives the upright size of an image it will turn upright as it loads: a TIFF
    whose size differs from its stored width and length (Pillow 13 does so; a Pillow that gives the
    stored size leaves the orientation to us)."""
    tags = getattr(im, "tag_v2", None)
    if im.format != "TIFF" or tags is None:
        return False
    return tuple(im.size) != (tags.get(256), tags.get(257))  # ImageWidth, ImageLength


def _webp_canvas_size(head: bytes) -> tuple[int, int] | None:
    """Canvas size from the first 30 bytes of a WebP file, or None if it is not one we can read.

    Pillow creates the WebP decoder, which allocates the whole canvas, while it opens the file;
    reading the size first lets our limit refuse such files before any allocation.
    """
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":  # extended format: 24-bit canvas width-1 and height-1
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":  # lossy key frame: 14-bit sizes
        return (
            int.from_bytes(head[26:28], "little") & 0x3FFF,
            int.from_bytes(head[28:30], "little") & 0x3FFF,
        )
    if chunk == b"VP8L" and head[20] == 0x2F:  # lossless: two 14-bit fields, each size-1
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _too_large(width: int, height: int, max_pixels: int) -> ImageTooLarge:
    return ImageTooLarge(f"image is {width}x{height} = {width * height} pixels, above the limit of {max_pixels} pixels")


def _check_size(width: int, height: int, *, max_pixels: int, min_side: int) -> None:
    """Refuse images outside the configured limits."""
    if width * height > max_pixels:
        raise _too_large(width, height, max_pixels)
    if min(width, height) < min_side:
        raise ImageTooSmall(f"image is {width}x{height}; both sides must be at least {min_side} pixels")


@contextmanager
def _open_checked(fp: BinaryIO, *, max_pixels: int, min_side: int) -> Iterator[tuple[Image.Image, ImageInfo, int]]:
    """Open an image lazily and check format and size from the header alone.

    Yields the open image, its upright ``ImageInfo`` and its EXIF orientation; the image is
    closed on exit. Must run inside ``_pillow_limit_at_least``.
    """
    head = fp.read(30)
    fp.seek(0)
    webp_size = _webp_canvas_size(head)
    if webp_size is not None and webp_size[0] * webp_size[1] > max_pixels:
        raise _too_large(webp_size[0], webp_size[1], max_pixels)
    try:
        im = Image.open(fp, formats=_OPEN_FORMATS)
    except UnidentifiedImageError:
        raise UnsupportedImage("not an image of an accepted type (JPEG, PNG, WebP, BMP, TIFF or GIF)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's threshold is at least ours here, so this image is above our limit too. (The
        # warning arrives as an exception only where warnings are turned into errors.)
        raise ImageTooLarge(f"image has more pixels than the limit of {max_pixels}") from exc
    except MemoryError:
        raise
    except Exception as exc:
        raise CorruptImage(f"the image header cannot be read: {exc}") from exc
    with im:
        fmt = im.format or ""
        if fmt not in ACCEPTED_FORMATS:
            raise UnsupportedImage(f"image format {fmt or 'unknown'} is not accepted")
        width, height = im.size
        orientation = exif_orientation(im)
        if orientation in _SWAPPING_ORIENTATIONS and not _reported_upright(im):
            width, height = height, width
        _check_size(width, height, max_pixels=max_pixels, min_side=min_side)
        yield im, ImageInfo(format=fmt, width=width, height=height), orientation


def probe_image(data: bytes | BinaryIO, *, max_pixels: int, min_side: int) -> ImageInfo:
    """Identify an image and check its size from the header only, without decoding pixels.

    ``data`` is the file's bytes or a seekable binary stream of it (read only as far as the header).

    Raises ``UnsupportedImage``, ``ImageTooLarge``, ``ImageTooSmall`` or (for a recognised but
    unreadable header) ``CorruptImage``.
    """
    with (
        _pillow_limit_at_least(max_pixels),
        _open_checked(
            io.BytesIO(data) if isinstance(data, bytes) else data, max_pixels=max_pixels, min_side=min_side
        ) as (_, info, _),
    ):
        return info


# --- decoding -------------------------------------------------------------------------------


def decode_image(source: bytes | str | os.PathLike[str] | BinaryIO, *, max_pixels: int, min_side: int) -> DecodedImage:
    """Decode an image into an upright sRGB array plus its transparency, after the probe checks.

    ``source`` is the file's bytes, a path, or a binary stream read from its current position.
    A missing path raises the usual ``OSError``; everything wrong with the content raises a
    ``BackdropError`` subclass, never a raw Pillow exception.
    """
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str | os.PathLike):
        with open(source, "rb") as fh:
            data = fh.read()
    else:
        data = source.read()
    with (
        _pillow_limit_at_least(max_pixels),
        _open_checked(io.BytesIO(data), max_pixels=max_pixels, min_side=min_side) as (im, info, orientation),
    ):
        try:
            im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge(f"image has more pixels than the limit of {max_pixels}") from exc
        except MemoryError:
            raise
        except Exception as exc:
            raise CorruptImage(f"the image data cannot be decoded (truncated or damaged): {exc}") from exc
        if exif_orientation(im) == 1:  # Pillow turned it upright as it loaded (a TIFF) and dropped the tag
            orientation = 1
        # Re-check after loading: a GIF frame may enlarge the canvas beyond the screen size.
        if im.size[0] * im.size[1] > max_pixels:
            raise _too_large(im.size[0], im.size[1], max_pixels)
        try:
            rgb, alpha = _to_rgb(im)
        except (UnsupportedImage, CorruptImage):
            raise
        except MemoryError:
            raise
        except Exception as exc:
            raise CorruptImage(f"the image cannot be converted to RGB: {exc}") from exc
        dpi = read_dpi(im)
    rgb = _orient(rgb, orientation)
    if alpha is not None:
        alpha = _orient(alpha, orientation)
    # Arrays viewed on Pillow's buffers are read-only; callers get arrays they own.
    if not rgb.flags.writeable:
        rgb = rgb.copy()
    if dpi is not None and orientation in _SWAPPING_ORIENTATIONS:
        dpi = (dpi[1], dpi[0])
    return DecodedImage(rgb=rgb, alpha=alpha, dpi=dpi, source_format=info.format)


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an (H, W[, C]) array; returns a C-contiguous array."""
    if orientation == 2:
        array = array[:, ::-1]
    elif orientation == 3:
        array = array[::-1, ::-1]
    elif orientation == 4:
        array = array[::-1]
    elif orientation == 5:
        array = array.swapaxes(0, 1)
    elif orientation == 6:
        array = np.rot90(array, k=-1)
    elif orientation == 7:
        array = array[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        array = np.rot90(array, k=1)
    return np.ascontiguousarray(array)


def read_dpi(im: Image.Image) -> tuple[float, float] | None:
    """The resolution stored in the file, or None when absent or meaningless.

    Values within 0.02 of a whole number are snapped to it: PNG stores pixels per metre, so
    300 dpi comes back as 299.9994.
    """
    raw = im.info.get("dpi")
    try:
        x, y = (float(v) for v in raw)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0):
        return None
    return _snap(x), _snap(y)


def _snap(value: float) -> float:
    nearest = round(value)
    return float(nearest) if abs(value - nearest) < 0.02 else value


def _to_rgb(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert any Pillow mode to sRGB uint8 composited over white, plus float alpha or None."""
    icc = im.info.get("icc_profile")
    colour, alpha8 = _split_alpha(im)
    rgb = _colour_to_rgb(colour, icc if isinstance(icc, bytes) and icc else None)
    if alpha8 is None or bool(np.all(alpha8 == 255)):
        return rgb, None
    alpha = alpha8.astype(np.float32)
    alpha /= np.float32(255.0)
    return _over_white(rgb, alpha8), alpha


# Rows of an image converted at a time where a whole-image temporary would cost several bytes a pixel.
_STRIP_ROWS = 256


def _over_white(rgb: np.ndarray, alpha8: np.ndarray) -> np.ndarray:
    """``rgb`` composited over white by ``alpha8``, rounded: (c*a + 255*(255-a) + 127) // 255. In uint16
    (the sum is at most 255*255 + 127) and a strip of rows at a time, so only the result is image-sized."""
    out = np.empty(rgb.shape, dtype=np.uint8)
    for y0 in range(0, rgb.shape[0], _STRIP_ROWS):
        rows = slice(y0, y0 + _STRIP_ROWS)
        a = alpha8[rows, :, None].astype(np.uint16)
        strip = rgb[rows].astype(np.uint16)
        strip *= a
        a = np.uint16(255) * (np.uint16(255) - a) + np.uint16(127)
        strip += a
        strip //= np.uint16(255)
        out[rows] = strip
    return out


def _split_alpha(im: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    """Separate the colour part of an image from its transparency (uint8 alpha or None)."""
    mode = im.mode
    if mode == "La":
        im, mode = im.convert("LA"), "LA"
    elif mode in ("RGBa", "PA"):
        im, mode = im.convert("RGBA"), "RGBA"
    elif mode == "P":
        has_alpha = "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        if has_alpha:
            im, mode = im.convert("RGBA"), "RGBA"
        else:
            return im.convert("RGB"), None
    if mode == "RGBA":
        return im.convert("RGB"), np.asarray(im.getchannel("A"))
    if mode == "LA":
        return im.getchannel("L"), np.asarray(im.getchannel("A"))
    key = im.info.get("transparency")
    if mode == "1":
        im = im.convert("L")
        key = None if key is None else (255 if key else 0)
    if key is not None and im.mode in ("L", "RGB", "I", "I;16", "I;16L", "I;16B", "I;16N"):
        return im, _alpha_from_key(im, key)
    return im, None


def _alpha_from_key(im: Image.Image, key: object) -> np.ndarray | None:
    """Alpha from a colour key (PNG tRNS for grey and truecolour): the key colour is transparent."""
    pixels = np.asarray(im)
    try:
        if pixels.ndim == 3:
            key_arr = np.asarray(key, dtype=np.int64).reshape(-1)[: pixels.shape[2]]
            if key_arr.size != pixels.shape[2]:
                return None
            match = np.all(pixels == key_arr, axis=2)
        else:
            match = pixels == int(key)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return np.where(match, np.uint8(0), np.uint8(255))


def _colour_to_rgb(im: Image.Image, icc: bytes | None) -> np.ndarray:
    """Convert an image without alpha to an sRGB (H, W, 3) uint8 array."""
    mode = im.mode
    if mode.startswith("I"):
        values = np.asarray(im).astype(np.int64)
        # 16-bit data: 65535 -> 255 and 32896 -> 128. Pillow's convert would clip instead.
        grey = ((np.clip(values, 0, 65535) + 128) // 257).astype(np.uint8)
        return _grey_to_rgb(grey)
    if mode == "F":
        grey = np.rint(np.clip(np.nan_to_num(np.asarray(im), nan=0.0), 0.0, 255.0)).astype(np.uint8)
        return _grey_to_rgb(grey)
    if mode == "LAB":
        transform = ImageCms.buildTransform(_lab_profile(), _srgb_profile(), "LAB", "RGB")
        return _as_rgb_array(ImageCms.applyTransform(im, transform))
    if mode in ("RGB", "L", "CMYK") and icc is not None:
        converted = _apply_icc(im, icc)
        if converted is not None:
            return _as_rgb_array(converted)
    if mode == "L":
        return _grey_to_rgb(np.asarray(im))
    try:
        return _as_rgb_array(im.convert("RGB"))
    except ValueError as exc:
        raise UnsupportedImage(f"pixel mode {mode} is not supported") from exc


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))


def _as_rgb_array(im: Image.Image) -> np.ndarray:
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


_ICC_SPACE_FOR_MODE: dict[str, str] = {"RGB": "RGB", "L": "GRAY", "CMYK": "CMYK"}


def _apply_icc(im: Image.Image, icc: bytes) -> Image.Image | None:
    """Convert to sRGB through the embedded profile; None when it is broken or does not fit the mode."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if profile.profile.xcolor_space.strip() != _ICC_SPACE_FOR_MODE[im.mode]:
            return None
        transform = ImageCms.buildTransform(
            profile, _srgb_profile(), im.mode, "RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL
        )
        return ImageCms.applyTransform(im, transform)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError, KeyError):
        return None


_profiles: dict[str, ImageCms.ImageCmsProfile] = {}
_profiles_lock = threading.Lock()


def _builtin_profile(name: str) -> ImageCms.ImageCmsProfile:
    with _profiles_lock:
        profile = _profiles.get(name)
        if profile is None:
            profile = ImageCms.ImageCmsProfile(ImageCms.createProfile(name))  # type: ignore[arg-type]
            _profiles[name] = profile
        return profile


def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return _builtin_profile("sRGB")


def _lab_profile() -> ImageCms.ImageCmsProfile:
    return _builtin_profile("LAB")


# --- encoding -------------------------------------------------------------------------------


def _normalise_format(fmt: str) -> str:
    name = _FORMAT_ALIASES.get(fmt.strip().lower()) if isinstance(fmt, str) else None
    if name is None:
        raise InvalidOption(f"output format {fmt!r} is not one of jpeg, png, webp")
    return name


def _check_quality(quality: int) -> int:
    if isinstance(quality, bool) or not isinstance(quality, int | np.integer) or not 1 <= quality <= 100:
        raise InvalidOption(f"quality must be an integer from 1 to 100, got {quality!r}")
    return int(quality)


def _check_dpi(dpi: tuple[float, float] | None) -> tuple[float, float] | None:
    if dpi is None:
        return None
    try:
        x, y = (float(v) for v in dpi)
    except (TypeError, ValueError) as exc:
        raise InvalidOption(f"dpi must be a pair of positive numbers, got {dpi!r}") from exc
    if not (math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0):
        raise InvalidOption(f"dpi must be a pair of positive numbers, got {dpi!r}")
    return x, y


def _require(array: np.ndarray, channels: int | None, what: str) -> np.ndarray:
    """Check an array to encode: (H, W) or (H, W, channels)."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{what} must be a numpy array")
    expected_ndim = 2 if channels is None else 3
    if array.ndim != expected_ndim or (channels is not None and array.shape[2] != channels):
        shape = "(H, W)" if channels is None else f"(H, W, {channels})"
        raise ValueError(f"{what} must have shape {shape}, got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{what} is empty: {array.shape}")
    return np.ascontiguousarray(array)


def _save(im: Image.Image, fmt: str, dpi: tuple[float, float] | None, **options: object) -> bytes:
    if dpi is not None:
        options["dpi"] = dpi
    buf = io.BytesIO()
    im.save(buf, format=fmt, **options)
    return buf.getvalue()


def _save_jpeg(im: Image.Image, dpi: tuple[float, float] | None, **options: object) -> bytes:
    """JPEG bytes of ``im``. With optimized Huffman tables Pillow must hold the whole output in one
    block of one byte per pixel (two from quality 95), which a detailed photo at high quality
    overflows ("broken data stream"); such an image is encoded again with standard tables, which
    libjpeg streams without that limit (a few percent larger)."""
    try:
        return _save(im, "JPEG", dpi, **options)
    except OSError:
        return _save(im, "JPEG", dpi, **{**options, "optimize": False})


# The longest side each format can hold (libjpeg's JPEG_MAX_DIMENSION, libwebp's WEBP_MAX_DIMENSION); PNG
# holds 2^31 - 1, far past the input limits.
MAX_SIDE = {"jpeg": 65_500, "webp": 16_383}


def check_encodable(width: int, height: int, fmt: str) -> None:
    """``ImageTooLarge`` when a ``width`` x ``height`` image is wider or taller than ``fmt`` can hold."""
    name = _normalise_format(fmt)
    limit = MAX_SIDE.get(name)
    if limit is not None and max(width, height) > limit:
        raise ImageTooLarge(
            f"the photo is {width}x{height}; {name.upper()} holds at most {limit} px a side: ask for format=png"
        )


def encode_image(rgb: np.ndarray, fmt: str, *, quality: int = 92, dpi: tuple[float, float] | None = None) -> bytes:
    """Encode an (H, W, 3) uint8 sRGB array as JPEG, PNG or WebP.

    JPEG keeps full chroma resolution (4:4:4) from quality 90 up, since ID photos are judged on
    fine detail; PNG ignores ``quality``. ``dpi`` is written where the format has a field for it
    (JPEG, PNG); WebP has none.
    """
    name = _normalise_format(fmt)
    q = _check_quality(quality)
    resolution = _check_dpi(dpi)
    array = _require(rgb, 3, "rgb")
    if array.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8, got {array.dtype}")
    check_encodable(array.shape[1], array.shape[0], name)
    im = Image.fromarray(array)
    if name == "jpeg":
        return _save_jpeg(im, resolution, quality=q, subsampling=0 if q >= 90 else 2, optimize=True)
    if name == "webp":
        return _save(im, "WEBP", None, quality=q, method=4)
    return _save(im, "PNG", resolution, compress_level=_PNG_COMPRESS_LEVEL)


def encode_rgba_png(rgba: np.ndarray, *, dpi: tuple[float, float] | None = None) -> bytes:
    """Encode an (H, W, 4) uint8 array as an RGBA PNG (a cut-out with real transparency)."""
    array = _require(rgba, 4, "rgba")
    if array.dtype != np.uint8:
        raise ValueError(f"rgba must be uint8, got {array.dtype}")
    return _save(Image.fromarray(array), "PNG", _check_dpi(dpi), compress_level=_PNG_COMPRESS_LEVEL)


def encode_matte_png(alpha: np.ndarray, *, dpi: tuple[float, float] | None = None) -> bytes:
    """Encode an (H, W) float matte in [0, 1] as an 8-bit greyscale PNG (values rounded, clipped)."""
    array = _require(alpha, None, "alpha")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"alpha must be a float array in [0, 1], got {array.dtype}")
    grey = np.rint(np.clip(np.nan_to_num(array, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    return _save(Image.fromarray(grey), "PNG", _check_dpi(dpi), compress_level=_PNG_COMPRESS_LEVEL)
