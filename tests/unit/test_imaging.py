"""Tests of common.imaging: probing, decoding every pixel mode, limits, ICC, EXIF, encoding."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, JpegImagePlugin

from common import imaging
from common.errors import CorruptImage, ImageTooLarge, ImageTooSmall, InvalidOption, UnsupportedImage
from common.imaging import (
    ACCEPTED_FORMATS,
    OUTPUT_MEDIA_TYPES,
    DecodedImage,
    ImageInfo,
    decode_image,
    encode_image,
    encode_matte_png,
    encode_rgba_png,
    probe_image,
)

LIMITS = {"max_pixels": 50_000_000, "min_side": 1}


# --- helpers --------------------------------------------------------------------------------


def save(im: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **options)
    return buf.getvalue()


def decode(data: bytes, **limits: int) -> DecodedImage:
    return decode_image(data, **{**LIMITS, **limits})


def probe(data: bytes, **limits: int) -> ImageInfo:
    return probe_image(data, **{**LIMITS, **limits})


def noise_rgb(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A few-hundred-byte PNG whose header claims a huge 1-bit greyscale image."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    idat = png_chunk(b"IDAT", zlib.compress(bytes(1 + (width + 7) // 8) * 4))
    return b"\x89PNG\r\n\x1a\n" + header + idat + png_chunk(b"IEND", b"")


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + _s15(x) + _s15(y) + _s15(z)


def _gamma_tag(gamma: float) -> bytes:
    return b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)


def _desc_tag(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text + bytes(78)


def icc_profile(space: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    """A minimal ICC v2 display profile (header, tag table, tag data)."""
    data_start = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, payload in tags:
        padded = payload + bytes(-len(payload) % 4)
        table += signature + struct.pack(">II", data_start + len(body), len(payload))
        body += padded
    header = (
        struct.pack(">I", data_start + len(body))
        + bytes(4)
        + struct.pack(">I", 0x02100000)
        + b"mntr"
        + space
        + b"XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(24)
        + bytes(4)
        + _s15(0.9642)
        + _s15(1.0)
        + _s15(0.8249)
        + bytes(4 + 16 + 28)
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


D50 = (0.9642, 1.0, 0.8249)

# Adobe RGB (1998)-like primaries (D50-adapted) with a plain 2.2 gamma: a wider gamut than sRGB.
WIDE_RGB_ICC = icc_profile(
    b"RGB ",
    [
        (b"desc", _desc_tag("Wide test RGB")),
        (b"wtpt", _xyz_tag(*D50)),
        (b"rXYZ", _xyz_tag(0.6097, 0.3111, 0.0195)),
        (b"gXYZ", _xyz_tag(0.2053, 0.6257, 0.0609)),
        (b"bXYZ", _xyz_tag(0.1492, 0.0632, 0.7446)),
        (b"rTRC", _gamma_tag(2.2)),
        (b"gTRC", _gamma_tag(2.2)),
        (b"bTRC", _gamma_tag(2.2)),
    ],
)

# Grey with a linear tone curve: mid-grey 128 is much lighter once encoded as sRGB.
LINEAR_GREY_ICC = icc_profile(
    b"GRAY", [(b"desc", _desc_tag("Linear grey")), (b"wtpt", _xyz_tag(*D50)), (b"kTRC", _gamma_tag(1.0))]
)

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
LAB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()


def jpeg_with_orientation(orientation: int, size: tuple[int, int] = (64, 32), **options: object) -> bytes:
    """A JPEG whose stored top half is red and bottom half blue, tagged with an EXIF orientation."""
    width, height = size
    im = Image.new("RGB", size, (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, width, height // 2))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(im, "JPEG", quality=95, exif=exif.tobytes(), **options)


def assert_close(actual: np.ndarray, expected: object, tolerance: int) -> None:
    diff = np.abs(actual.astype(np.int32) - np.asarray(expected, dtype=np.int32))
    assert diff.max() <= tolerance, f"{actual.tolist()} vs {expected}"


# --- constants and result types ---------------------------------------------------------------


def test_accepted_formats_and_media_types() -> None:
    assert {"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF"} == ACCEPTED_FORMATS
    assert OUTPUT_MEDIA_TYPES == {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def test_decoded_image_shape_dtype_and_properties() -> None:
    decoded = decode(save(Image.fromarray(noise_rgb(7, 5)), "PNG"))
    assert decoded.rgb.shape == (5, 7, 3)
    assert decoded.rgb.dtype == np.uint8
    assert decoded.rgb.flags.c_contiguous
    assert decoded.rgb.flags.writeable
    assert (decoded.width, decoded.height) == (7, 5)
    assert decoded.alpha is None
    assert decoded.dpi is None
    assert decoded.source_format == "PNG"


# --- pixel modes ----------------------------------------------------------------------------


def test_rgb_png_is_exact() -> None:
    pixels = noise_rgb(9, 6, seed=1)
    np.testing.assert_array_equal(decode(save(Image.fromarray(pixels), "PNG")).rgb, pixels)


def test_mode_1_becomes_black_and_white() -> None:
    im = Image.new("1", (4, 2), 0)
    im.putpixel((1, 0), 1)
    rgb = decode(save(im, "PNG")).rgb
    assert rgb[0, 1].tolist() == [255, 255, 255]
    assert rgb[0, 0].tolist() == [0, 0, 0]


def test_mode_l_is_replicated_to_three_channels() -> None:
    grey = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    rgb = decode(save(Image.fromarray(grey), "PNG")).rgb
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], grey)


def test_la_is_composited_over_white_and_alpha_kept() -> None:
    grey = np.array([[0, 100, 200, 50]], dtype=np.uint8)
    alpha = np.array([[0, 128, 255, 10]], dtype=np.uint8)
    data = save(Image.fromarray(np.stack([grey, alpha], axis=-1), mode="LA"), "PNG")
    decoded = decode(data)
    assert decoded.alpha is not None
    assert decoded.alpha.dtype == np.float32
    np.testing.assert_array_equal(decoded.alpha, alpha.astype(np.float32) / np.float32(255))
    expected = np.rint((grey * (alpha / 255.0)) + 255 * (1 - alpha / 255.0))
    for channel in range(3):
        np.testing.assert_array_equal(decoded.rgb[..., channel], expected)
    assert decoded.rgb[0, 0].tolist() == [255, 255, 255]  # fully transparent black is white


def test_rgba_is_composited_over_white_and_alpha_kept() -> None:
    rgba = np.array([[[200, 100, 0, 128], [10, 20, 30, 255], [0, 0, 0, 0]]], dtype=np.uint8)
    decoded = decode(save(Image.fromarray(rgba), "PNG"))
    assert decoded.alpha is not None
    np.testing.assert_array_equal(decoded.alpha, rgba[..., 3] / np.float32(255))
    a = 128 / 255
    assert decoded.rgb[0, 0].tolist() == [round(200 * a + 255 * (1 - a)), round(100 * a + 255 * (1 - a)), 127]
    assert decoded.rgb[0, 1].tolist() == [10, 20, 30]
    assert decoded.rgb[0, 2].tolist() == [255, 255, 255]


def test_fully_opaque_alpha_channel_gives_no_alpha() -> None:
    rgba = np.zeros((3, 3, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    decoded = decode(save(Image.fromarray(rgba), "PNG"))
    assert decoded.alpha is None
    assert decoded.rgb.max() == 0


def test_rgba_webp_keeps_alpha() -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[:, :4] = (255, 0, 0, 255)
    decoded = decode(save(Image.fromarray(rgba), "WEBP", lossless=True))
    assert decoded.alpha is not None
    assert decoded.alpha[:, :4].min() == 1.0
    assert decoded.alpha[:, 4:].max() == 0.0
    assert decoded.rgb[0, 0].tolist() == [255, 0, 0]
    assert decoded.rgb[0, 7].tolist() == [255, 255, 255]


def _palette_image() -> Image.Image:
    im = Image.new("P", (3, 1))
    im.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0])
    im.putdata([0, 1, 2])
    return im


def test_palette_colours_are_looked_up() -> None:
    decoded = decode(save(_palette_image(), "PNG"))
    assert decoded.rgb[0].tolist() == [[10, 20, 30], [200, 100, 50], [0, 255, 0]]
    assert decoded.alpha is None


def test_palette_transparency_index_becomes_alpha() -> None:
    decoded = decode(save(_palette_image(), "PNG", transparency=1))
    assert decoded.alpha is not None
    assert decoded.alpha[0].tolist() == [1.0, 0.0, 1.0]
    assert decoded.rgb[0].tolist() == [[10, 20, 30], [255, 255, 255], [0, 255, 0]]


def test_palette_per_entry_alpha_becomes_alpha() -> None:
    decoded = decode(save(_palette_image(), "PNG", transparency=bytes([255, 0, 51])))
    assert decoded.alpha is not None
    np.testing.assert_allclose(decoded.alpha[0], [1.0, 0.0, 0.2], atol=1e-6)
    assert decoded.rgb[0, 2].tolist() == [round(255 * 0.8), 255, round(255 * 0.8)]


def test_gif_transparency_becomes_alpha() -> None:
    decoded = decode(save(_palette_image(), "GIF", transparency=0))
    assert decoded.source_format == "GIF"
    assert decoded.alpha is not None
    assert decoded.alpha[0].tolist() == [0.0, 1.0, 1.0]
    assert decoded.rgb[0, 1].tolist() == [200, 100, 50]


def test_grey_and_rgb_colour_keys_become_alpha() -> None:
    grey = decode(save(Image.fromarray(np.array([[7, 8]], dtype=np.uint8)), "PNG", transparency=7))
    assert grey.alpha is not None
    assert grey.alpha[0].tolist() == [0.0, 1.0]
    rgb = np.array([[[1, 2, 3], [1, 2, 4]]], dtype=np.uint8)
    keyed = decode(save(Image.fromarray(rgb), "PNG", transparency=(1, 2, 3)))
    assert keyed.alpha is not None
    assert keyed.alpha[0].tolist() == [0.0, 1.0]
    assert keyed.rgb[0].tolist() == [[255, 255, 255], [1, 2, 4]]


def test_palette_with_alpha_mode_pa() -> None:
    im = Image.new("PA", (2, 1))
    im.putpalette([10, 20, 30, 40, 50, 60])
    im.putdata([(0, 255), (1, 0)])
    decoded = decode(save(im, "TIFF"))
    assert decoded.alpha is not None
    assert decoded.alpha[0].tolist() == [1.0, 0.0]
    assert decoded.rgb[0].tolist() == [[10, 20, 30], [255, 255, 255]]


def test_sixteen_bit_grey_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257, 32896, 65535, 1000]], dtype=np.uint16)
    data = save(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    rgb = decode(data).rgb
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255, 4]  # 1000 / 257 = 3.89 -> 4
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_sixteen_bit_big_endian_tiff() -> None:
    im = Image.frombytes("I;16B", (3, 1), np.array([65535, 32896, 0], dtype=">u2").tobytes())
    data = save(im, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I;16B"
    assert decode(data).rgb[0, :, 1].tolist() == [255, 128, 0]


def test_mode_i_is_scaled_and_clipped() -> None:
    im = Image.fromarray(np.array([[65535, 32896, -5, 100_000]], dtype=np.int32), mode="I")
    data = save(im, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    assert decode(data).rgb[0, :, 0].tolist() == [255, 128, 0, 255]


def test_float_mode_is_clipped_and_rounded() -> None:
    im = Image.fromarray(np.array([[-5.0, 127.6, 300.0, 0.4]], dtype=np.float32), mode="F")
    data = save(im, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"
    assert decode(data).rgb[0, :, 0].tolist() == [0, 128, 255, 0]


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_is_converted(fmt: str) -> None:
    im = Image.new("CMYK", (16, 8), (255, 0, 0, 0))
    im.paste((0, 0, 0, 255), (8, 0, 16, 8))
    data = save(im, fmt, quality=100) if fmt == "JPEG" else save(im, fmt)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    rgb = decode(data).rgb
    assert_close(rgb[4, 2], (0, 255, 255), tolerance=6)  # pure cyan
    assert_close(rgb[4, 13], (0, 0, 0), tolerance=6)  # pure black


def test_ycbcr_tiff_is_converted() -> None:
    im = Image.new("RGB", (8, 8), (200, 40, 90)).convert("YCbCr")
    data = save(im, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "YCbCr"
    assert_close(decode(data).rgb[3, 3], (200, 40, 90), tolerance=3)


def test_lab_tiff_is_converted() -> None:
    im = Image.new("LAB", (4, 2), (255, 128, 128))  # L*=100, a*=b*=0: white
    im.paste((0, 128, 128), (2, 0, 4, 2))  # L*=0: black
    data = save(im, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "LAB"
    rgb = decode(data).rgb
    assert_close(rgb[0, 0], (255, 255, 255), tolerance=3)
    assert_close(rgb[0, 3], (0, 0, 0), tolerance=3)


def test_premultiplied_modes_are_unpremultiplied_then_composited() -> None:
    rgba = Image.new("RGBA", (1, 1), (200, 100, 0, 128))
    rgb, alpha = imaging._to_rgb(rgba.convert("RGBa"))
    assert alpha is not None
    assert alpha[0, 0] == np.float32(128 / 255)
    assert_close(rgb[0, 0], (227, 177, 127), tolerance=1)
    grey, grey_alpha = imaging._to_rgb(Image.new("LA", (1, 1), (100, 64)).convert("La"))
    assert grey_alpha is not None
    assert_close(grey[0, 0], [round(100 * 64 / 255 + 255 * 191 / 255)] * 3, tolerance=1)


def test_bmp_and_tiff_and_mpo_are_accepted() -> None:
    pixels = noise_rgb(8, 4, seed=3)
    for fmt in ("BMP", "TIFF"):
        decoded = decode(save(Image.fromarray(pixels), fmt))
        assert decoded.source_format == fmt
        np.testing.assert_array_equal(decoded.rgb, pixels)
    mpo = save(
        Image.new("RGB", (40, 40), (255, 0, 0)),
        "MPO",
        save_all=True,
        append_images=[Image.new("RGB", (40, 40), (0, 0, 255))],
    )
    decoded = decode(mpo)
    assert decoded.source_format == "MPO"
    assert_close(decoded.rgb[20, 20], (255, 0, 0), tolerance=4)


def test_animated_gif_and_webp_give_the_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    gif = save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    webp = save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    for data in (gif, webp):
        assert Image.open(io.BytesIO(data)).n_frames == 2
        assert_close(decode(data).rgb[8, 8], (255, 0, 0), tolerance=2)


# --- EXIF orientation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "red_side"),
    [(6, "right"), (8, "left")],
)
def test_exif_rotation_is_applied_and_swaps_sides(orientation: int, red_side: str) -> None:
    data = jpeg_with_orientation(orientation)
    info = probe(data)
    assert (info.width, info.height) == (32, 64)
    decoded = decode(data)
    assert decoded.rgb.shape == (64, 32, 3)
    assert (decoded.width, decoded.height) == (32, 64)
    assert decoded.rgb.flags.c_contiguous
    red, blue = (decoded.rgb[32, 28], decoded.rgb[32, 3])
    if red_side == "left":
        red, blue = blue, red
    assert_close(red, (255, 0, 0), tolerance=8)
    assert_close(blue, (0, 0, 255), tolerance=8)


def test_exif_orientation_3_turns_upside_down_without_swapping() -> None:
    data = jpeg_with_orientation(3)
    assert probe(data) == ImageInfo(format="JPEG", width=64, height=32)
    rgb = decode(data).rgb
    assert rgb.shape == (32, 64, 3)
    assert_close(rgb[2, 10], (0, 0, 255), tolerance=8)
    assert_close(rgb[29, 10], (255, 0, 0), tolerance=8)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_tiffs_orientation_is_applied_once(orientation: int) -> None:
    """Pillow turns a TIFF upright itself (its size at open, its pixels at load) where it does so for no
    other format: the TIFF must come out as the same pixels with the same tag in a PNG do."""
    pixels = np.random.default_rng(orientation).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    as_png = save(Image.fromarray(pixels), "PNG", exif=exif.tobytes())
    as_tiff = save(Image.fromarray(pixels), "TIFF", tiffinfo={0x0112: orientation})
    upright = decode(as_png).rgb
    assert upright.shape == ((10, 6, 3) if orientation >= 5 else (6, 10, 3))
    np.testing.assert_array_equal(decode(as_tiff).rgb, upright)
    assert (probe(as_tiff).width, probe(as_tiff).height) == (upright.shape[1], upright.shape[0])


def test_exif_orientation_swaps_dpi_and_alpha() -> None:
    rgba = np.zeros((10, 20, 4), dtype=np.uint8)
    rgba[:5, :, 3] = 255  # stored top half opaque
    exif = Image.Exif()
    exif[0x0112] = 6
    data = save(Image.fromarray(rgba), "PNG", exif=exif.tobytes(), dpi=(100, 200))
    decoded = decode(data)
    assert decoded.alpha is not None
    assert decoded.alpha.shape == (20, 10)
    assert decoded.alpha[:, 9].min() == 1.0  # top became right
    assert decoded.alpha[:, 0].max() == 0.0
    assert decoded.dpi == (200.0, 100.0)


# --- ICC profiles ---------------------------------------------------------------------------


def test_wide_gamut_profile_changes_pixels() -> None:
    colour = (50, 150, 50)
    data = save(Image.new("RGB", (4, 4), colour), "PNG", icc_profile=WIDE_RGB_ICC)
    converted = decode(data).rgb[0, 0]
    # Wide-gamut green is more saturated than the same numbers read as sRGB.
    assert converted[0] < 20
    assert abs(int(converted[1]) - 150) <= 4
    assert converted[2] < 45
    assert np.abs(converted.astype(int) - colour).max() > 15


def test_wide_gamut_profile_in_jpeg_and_with_alpha() -> None:
    jpeg = save(Image.new("RGB", (16, 16), (200, 30, 30)), "JPEG", quality=100, icc_profile=WIDE_RGB_ICC)
    assert decode(jpeg).rgb[8, 8, 0] > 220  # a wide-gamut red is redder in sRGB
    rgba = save(Image.new("RGBA", (4, 4), (50, 150, 50, 255)), "PNG", icc_profile=WIDE_RGB_ICC)
    assert decode(rgba).rgb[0, 0, 0] < 20


def test_srgb_profile_leaves_pixels_unchanged() -> None:
    pixels = noise_rgb(16, 16, seed=4)
    decoded = decode(save(Image.fromarray(pixels), "PNG", icc_profile=SRGB_ICC))
    assert_close(decoded.rgb, pixels, tolerance=2)


def test_grey_profile_is_applied_to_l_images() -> None:
    data = save(Image.new("L", (4, 4), 128), "PNG", icc_profile=LINEAR_GREY_ICC)
    assert_close(decode(data).rgb[0, 0], (188, 188, 188), tolerance=3)


@pytest.mark.parametrize("icc", [b"definitely not an ICC profile", LAB_ICC], ids=["garbage", "wrong-space"])
def test_unusable_profile_is_ignored(icc: bytes) -> None:
    pixels = noise_rgb(8, 8, seed=5)
    data = save(Image.fromarray(pixels), "PNG", icc_profile=icc)
    assert Image.open(io.BytesIO(data)).info["icc_profile"] == icc
    np.testing.assert_array_equal(decode(data).rgb, pixels)


# --- errors -----------------------------------------------------------------------------------


def test_truncated_jpeg_is_corrupt_but_probes() -> None:
    data = save(Image.fromarray(noise_rgb(64, 64)), "JPEG")
    truncated = data[: len(data) // 2]
    assert probe(truncated).width == 64
    with pytest.raises(CorruptImage):
        decode(truncated)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png_is_corrupt() -> None:
    data = save(Image.fromarray(noise_rgb(64, 64)), "PNG")
    with pytest.raises(CorruptImage):
        decode(data[: len(data) - 400])


def test_damaged_png_data_is_corrupt() -> None:
    data = bytearray(save(Image.fromarray(noise_rgb(64, 64)), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 60] = bytes(50)
    with pytest.raises(CorruptImage):
        decode(bytes(data))


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, this is a text file and not an image\n" * 4, b"\x89PNG\r\n\x1a\n"],
    ids=["empty", "text", "png-signature-only"],
)
def test_non_images_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedImage):
        probe(data)
    with pytest.raises(UnsupportedImage):
        decode(data)


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA", "PCX"])
def test_valid_images_of_other_formats_are_unsupported(fmt: str) -> None:
    data = save(Image.new("RGB", (48, 48), (1, 2, 3)), fmt)
    assert Image.open(io.BytesIO(data)).format == fmt  # Pillow itself reads it
    with pytest.raises(UnsupportedImage):
        probe(data)
    with pytest.raises(UnsupportedImage):
        decode(data)


def _forbid_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.parametrize("max_pixels", [50_000_000, 500_000_000])
def test_png_bomb_is_refused_from_the_header(monkeypatch: pytest.MonkeyPatch, max_pixels: int) -> None:
    data = png_bomb()
    assert len(data) < 1000
    _forbid_pixel_decoding(monkeypatch)  # refused from the header: any pixel decoding fails the test
    with pytest.raises(ImageTooLarge):
        probe_image(data, max_pixels=max_pixels, min_side=32)
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_pixels=max_pixels, min_side=32)


def test_probe_reads_only_the_header(monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = noise_rgb(40, 30)
    data = {
        "PNG": save(Image.fromarray(pixels), "PNG"),
        "JPEG": jpeg_with_orientation(6),
        "TIFF": save(Image.fromarray(pixels), "TIFF"),
        "GIF": save(Image.fromarray(pixels), "GIF"),
    }
    _forbid_pixel_decoding(monkeypatch)
    assert probe(data["PNG"]) == ImageInfo(format="PNG", width=40, height=30)
    assert probe(data["JPEG"]) == ImageInfo(format="JPEG", width=32, height=64)
    assert probe(data["TIFF"]) == ImageInfo(format="TIFF", width=40, height=30)
    assert probe(data["GIF"]) == ImageInfo(format="GIF", width=40, height=30)


def test_pixel_limit_is_inclusive() -> None:
    data = save(Image.new("RGB", (50, 40)), "PNG")
    assert probe(data, max_pixels=2000).width == 50
    assert decode(data, max_pixels=2000).height == 40
    with pytest.raises(ImageTooLarge):
        probe(data, max_pixels=1999)
    with pytest.raises(ImageTooLarge):
        decode(data, max_pixels=1999)


def test_small_images_are_refused() -> None:
    data = save(Image.new("RGB", (10, 10)), "PNG")
    with pytest.raises(ImageTooSmall):
        probe(data, min_side=32)
    with pytest.raises(ImageTooSmall):
        decode(data, min_side=32)
    wide = save(Image.new("RGB", (200, 31)), "PNG")
    with pytest.raises(ImageTooSmall):
        decode(wide, min_side=32)
    assert probe(save(Image.new("RGB", (32, 32)), "PNG"), min_side=32).width == 32


def test_our_limit_above_pillows_needs_no_global_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = save(Image.fromarray(noise_rgb(64, 64)), "PNG")  # 4096 pixels: above 2x Pillow's limit
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))
    assert probe(data, max_pixels=10_000).width == 64
    assert decode(data, max_pixels=10_000).rgb.shape == (64, 64, 3)
    assert Image.MAX_IMAGE_PIXELS == 1000
    with pytest.raises(ImageTooLarge):
        decode(data, max_pixels=4095)
    assert Image.MAX_IMAGE_PIXELS == 1000


# --- sources and DPI ------------------------------------------------------------------------


def test_path_stream_and_bytes_sources_agree(tmp_path: Path) -> None:
    pixels = noise_rgb(12, 9, seed=6)
    data = save(Image.fromarray(pixels), "PNG")
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    for source in (data, path, str(path), io.BytesIO(data)):
        np.testing.assert_array_equal(decode_image(source, **LIMITS).rgb, pixels)
    with pytest.raises(FileNotFoundError):
        decode_image(tmp_path / "missing.png", **LIMITS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_dpi_survives_decode_and_encode(fmt: str) -> None:
    data = save(Image.new("RGB", (40, 40), (9, 9, 9)), fmt, dpi=(300, 600))
    decoded = decode(data)
    assert decoded.dpi == (300.0, 600.0)
    encoded = encode_image(decoded.rgb, fmt, dpi=decoded.dpi)
    dpi = Image.open(io.BytesIO(encoded)).info["dpi"]
    assert dpi == pytest.approx((300, 600), abs=0.01)


def test_missing_dpi_is_none_and_not_written() -> None:
    decoded = decode(save(Image.new("RGB", (40, 40)), "PNG"))
    assert decoded.dpi is None
    assert "dpi" not in Image.open(io.BytesIO(encode_image(decoded.rgb, "png"))).info


# --- encoding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "pillow_format"),
    [("jpeg", "JPEG"), ("JPG", "JPEG"), ("png", "PNG"), ("PNG", "PNG"), ("webp", "WEBP")],
)
def test_encode_round_trips_size_and_pixels(fmt: str, pillow_format: str) -> None:
    rgb = np.zeros((30, 50, 3), dtype=np.uint8)
    rgb[:, :25] = (220, 40, 40)
    rgb[:, 25:] = (40, 40, 220)
    encoded = encode_image(rgb, fmt, quality=95)
    reopened = Image.open(io.BytesIO(encoded))
    assert reopened.format == pillow_format
    assert reopened.size == (50, 30)
    decoded = np.asarray(reopened.convert("RGB"))
    if pillow_format == "PNG":
        np.testing.assert_array_equal(decoded, rgb)
    else:
        assert_close(decoded[15, 5], (220, 40, 40), tolerance=8)
        assert_close(decoded[15, 45], (40, 40, 220), tolerance=8)


def test_jpeg_quality_changes_size_and_subsampling() -> None:
    rgb = noise_rgb(96, 96, seed=7)
    low, high = encode_image(rgb, "jpeg", quality=30), encode_image(rgb, "jpeg", quality=95)
    assert len(low) < len(high)
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(high))) == 0  # 4:4:4
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(encode_image(rgb, "jpeg", quality=90)))) == 0
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(encode_image(rgb, "jpeg", quality=89)))) == 2
    assert len(encode_image(rgb, "webp", quality=20)) < len(encode_image(rgb, "webp", quality=95))


def test_png_ignores_quality() -> None:
    rgb = noise_rgb(32, 32, seed=8)
    assert encode_image(rgb, "png", quality=1) == encode_image(rgb, "png", quality=100)


@pytest.mark.parametrize("fmt", ["gif", "tiff", "", "jpeg2000", "image/png"])
def test_unknown_output_format_is_invalid(fmt: str) -> None:
    with pytest.raises(InvalidOption):
        encode_image(noise_rgb(4, 4), fmt)


@pytest.mark.parametrize("quality", [0, 101, -3, True, 50.5, "90"])
def test_invalid_quality_is_invalid(quality: object) -> None:
    with pytest.raises(InvalidOption):
        encode_image(noise_rgb(4, 4), "jpeg", quality=quality)  # type: ignore[arg-type]


@pytest.mark.parametrize("quality", [1, 100])
def test_quality_bounds_are_accepted(quality: int) -> None:
    assert Image.open(io.BytesIO(encode_image(noise_rgb(8, 8), "jpeg", quality=quality))).size == (8, 8)


def test_invalid_dpi_is_invalid() -> None:
    with pytest.raises(InvalidOption):
        encode_image(noise_rgb(4, 4), "png", dpi=(0.0, 300.0))


def test_encode_rejects_wrong_arrays() -> None:
    with pytest.raises(ValueError, match="shape"):
        encode_image(np.zeros((4, 4), dtype=np.uint8), "png")
    with pytest.raises(ValueError, match="uint8"):
        encode_image(np.zeros((4, 4, 3), dtype=np.float32), "png")


def test_encode_accepts_non_contiguous_arrays() -> None:
    rgb = noise_rgb(10, 8, seed=9)[:, ::-1]
    reopened = Image.open(io.BytesIO(encode_image(rgb, "png")))
    np.testing.assert_array_equal(np.asarray(reopened), rgb)


def test_encode_rgba_png_is_exact() -> None:
    rgba = np.random.default_rng(10).integers(0, 256, size=(6, 9, 4), dtype=np.uint8)
    reopened = Image.open(io.BytesIO(encode_rgba_png(rgba, dpi=(300, 300))))
    assert reopened.mode == "RGBA"
    assert reopened.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    np.testing.assert_array_equal(np.asarray(reopened), rgba)


def test_encode_matte_png_rounds_and_clips() -> None:
    alpha = np.array([[0.0, 0.5, 1.0, 0.002, -0.3, 1.7]], dtype=np.float32)
    reopened = Image.open(io.BytesIO(encode_matte_png(alpha)))
    assert reopened.mode == "L"
    assert np.asarray(reopened).tolist() == [[0, 128, 255, 1, 0, 255]]
    with pytest.raises(ValueError, match="float"):
        encode_matte_png(np.zeros((2, 2), dtype=np.uint8))
    dpi = Image.open(io.BytesIO(encode_matte_png(alpha, dpi=(72, 72)))).info["dpi"]
    assert dpi == pytest.approx((72, 72), abs=0.01)


# --- WebP canvas and Pillow's limit ----------------------------------------------------------


@pytest.mark.parametrize("options", [{"quality": 80}, {"lossless": True}], ids=["lossy", "lossless"])
@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_webp_canvas_size_is_read_from_the_header(options: dict[str, object], mode: str) -> None:
    data = save(Image.new(mode, (321, 123), (1, 2, 3, 4)[: len(mode)]), "WEBP", **options)
    assert imaging._webp_canvas_size(data[:30]) == (321, 123)
    assert probe(data) == ImageInfo(format="WEBP", width=321, height=123)


def test_webp_bomb_is_refused_before_pillow_sees_it(monkeypatch: pytest.MonkeyPatch) -> None:
    width, height = 9000, 8000  # 72M pixels: below Pillow's own threshold, above ours
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (width - 1).to_bytes(3, "little")
    vp8x += (height - 1).to_bytes(3, "little")
    data = b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x

    def refuse_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("Pillow was asked to open the file")

    monkeypatch.setattr(Image, "open", refuse_open)
    with pytest.raises(ImageTooLarge, match="9000x8000"):
        probe(data)
    with pytest.raises(ImageTooLarge):
        decode(data)


def test_nested_limits_restore_pillows_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with imaging._pillow_limit_at_least(100):
        assert Image.MAX_IMAGE_PIXELS == 5000  # never lowered
        with imaging._pillow_limit_at_least(90_000):
            assert Image.MAX_IMAGE_PIXELS == 90_000
            with imaging._pillow_limit_at_least(20_000):
                assert Image.MAX_IMAGE_PIXELS == 90_000
        assert Image.MAX_IMAGE_PIXELS == 5000
    assert Image.MAX_IMAGE_PIXELS == 5000
