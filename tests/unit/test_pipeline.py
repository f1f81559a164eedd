"""The steps around the network, with a matte we control: sizes, backgrounds, outputs, metadata."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from common.errors import InvalidOption
from common.imaging import decode_image
from common.options import JobOptions, OutputFormat, OutputKind
from common.pipeline import full_resolution_matte, network_input, render_outputs

ALL_OUTPUTS = frozenset(OutputKind)
Recorded = Callable[[object, str], list[tuple[object, ...]]]


def _png(rgb: np.ndarray, **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG", **params)
    return buffer.getvalue()


def _photo(height: int = 90, width: int = 60) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _matte(height: int = 90, width: int = 60) -> np.ndarray:
    """Left third background (0), middle third soft, right third person (1)."""
    matte = np.zeros((height, width), np.float32)
    matte[:, width // 3 : 2 * width // 3] = 0.5
    matte[:, 2 * width // 3 :] = 1.0
    return matte


def _decode(data: bytes):
    return decode_image(data, max_pixels=10_000_000, min_side=8)


def test_network_input_resizes_with_the_right_filter() -> None:
    photo = np.zeros((100, 200, 3), np.uint8)
    photo[:, ::2] = 255  # vertical stripes: area averaging gives grey, not stripes
    small = network_input(photo, (32, 64))
    assert small.shape == (32, 64, 3)
    assert 100 < small.mean() < 155 and small.std() < 40  # nearest-neighbour would give 0s and 255s
    assert np.array_equal(network_input(photo, (100, 200)), photo)
    assert network_input(photo, (256, 512)).shape == (256, 512, 3)


def test_full_resolution_matte_has_the_photo_size_and_source_alpha() -> None:
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:, :10, 3] = 0  # the source is transparent on the left
    decoded = _decode(_png(rgba))
    matte = full_resolution_matte(np.ones((32, 32), np.float32), decoded)
    assert matte.shape == (40, 50) and matte.dtype == np.float32
    assert np.all(matte[:, :10] == 0) and np.all(matte[:, 10:] == 1)


def test_composite_background_and_foreground_exact_at_full_resolution() -> None:
    photo = _photo()
    decoded = _decode(_png(photo))
    matte = _matte()
    options = JobOptions(background="red", format=OutputFormat.PNG, outputs=ALL_OUTPUTS)
    outputs = render_outputs(decoded, matte, options)

    result = np.asarray(Image.open(io.BytesIO(outputs[OutputKind.COMPOSITE].data)))
    assert result.shape == photo.shape
    assert np.all(result[:, :20] == (208, 0, 0))  # alpha 0: exactly the requested colour
    assert np.array_equal(result[:, 40:], photo[:, 40:])  # alpha 1: exactly the photo

    cut = np.asarray(Image.open(io.BytesIO(outputs[OutputKind.CUTOUT].data)))
    assert cut.shape == (90, 60, 4)
    assert np.array_equal(cut[..., 3], np.rint(matte * 255).astype(np.uint8))
    matte_png = np.asarray(Image.open(io.BytesIO(outputs[OutputKind.MATTE].data)))
    assert np.array_equal(matte_png, np.rint(matte * 255).astype(np.uint8))


def test_naive_blend_when_decontamination_is_off() -> None:
    photo = _photo()
    decoded = _decode(_png(photo))
    matte = _matte()
    options = JobOptions(background="#000", format=OutputFormat.PNG, decontaminate=False)
    result = np.asarray(Image.open(io.BytesIO(render_outputs(decoded, matte, options)[OutputKind.COMPOSITE].data)))
    expected = np.rint(photo[:, 20:40].astype(np.float64) * 0.5).astype(np.uint8)
    assert np.abs(result[:, 20:40].astype(int) - expected).max() <= 1


def test_transparent_background_gives_rgba_png() -> None:
    decoded = _decode(_png(_photo()))
    options = JobOptions(background="transparent")
    assert options.composite_format is OutputFormat.PNG
    item = render_outputs(decoded, _matte(), options)[OutputKind.COMPOSITE]
    image = Image.open(io.BytesIO(item.data))
    assert image.mode == "RGBA" and image.size == (60, 90)
    assert np.all(np.asarray(image)[:, :20, 3] == 0)


def test_transparent_background_refuses_jpeg() -> None:
    with pytest.raises(InvalidOption, match="transparent"):
        JobOptions(background="transparent", format=OutputFormat.JPEG)


@pytest.mark.parametrize("quality", [0, 101])
def test_quality_bounds(quality: int) -> None:
    with pytest.raises(InvalidOption, match="quality"):
        JobOptions(background="blue", quality=quality)


def test_output_format_parse() -> None:
    assert OutputFormat.parse("JPG") is OutputFormat.JPEG
    assert OutputFormat.parse("webp") is OutputFormat.WEBP
    with pytest.raises(InvalidOption, match="accepted: jpeg, png, webp"):
        OutputFormat.parse("gif")


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_every_format_keeps_size_and_dpi(fmt: OutputFormat) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_photo()).save(buffer, "JPEG", dpi=(300, 300))
    decoded = _decode(buffer.getvalue())
    options = JobOptions(background="blue", format=fmt, outputs=ALL_OUTPUTS)
    for kind, item in render_outputs(decoded, _matte(), options).items.items():
        image = Image.open(io.BytesIO(item.data))
        assert image.size == (60, 90), kind
        if image.format != "WEBP":  # WebP has no resolution field
            assert tuple(round(v) for v in image.info["dpi"]) == (300, 300), kind


def test_exif_rotated_photo_keeps_its_displayed_size() -> None:
    photo = Image.fromarray(_photo(60, 90))  # stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees: portrait
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", exif=exif)
    decoded = _decode(buffer.getvalue())
    assert (decoded.width, decoded.height) == (60, 90)
    item = render_outputs(decoded, _matte(), JobOptions(background="white"))[OutputKind.COMPOSITE]
    assert Image.open(io.BytesIO(item.data)).size == (60, 90)


def test_id_photo_matte_from_the_network_or_the_photos_alpha() -> None:
    from common.pipeline import id_photo_matte
    from common.settings import Settings

    settings = Settings(inference_ref_size=32, inference_max_side=64)
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:, :10, 3] = 0
    decoded = _decode(_png(rgba))
    seen: list[tuple[int, ...]] = []

    def predict_one(network_input: np.ndarray) -> np.ndarray:
        seen.append(network_input.shape)
        return np.full(network_input.shape[:2], 0.5, np.float32)

    network = id_photo_matte(decoded, JobOptions(id_spec="icao-35x45"), settings, predict_one)
    assert network.shape == (40, 50) and seen and seen[0][2] == 3
    assert np.all(network[:, 10:] == 0.5) and np.all(network[:, :10] == 0)  # limited by the source's alpha
    seen.clear()
    own = id_photo_matte(decoded, JobOptions(id_spec="icao-35x45", matte_source="alpha"), settings, predict_one)
    assert not seen and np.array_equal(own, decoded.alpha)


def test_a_transparent_composite_and_the_cutout_are_one_encode(recorded: Recorded) -> None:
    import common.pipeline as pipeline

    encodes = recorded(pipeline, "encode_rgba_png")
    decoded = _decode(_png(_photo()))
    options = JobOptions(background="transparent", outputs=[OutputKind.COMPOSITE, OutputKind.CUTOUT])
    outputs = render_outputs(decoded, _matte(), options)
    assert outputs[OutputKind.COMPOSITE].data == outputs[OutputKind.CUTOUT].data
    assert [args[0].shape for args in encodes] == [(90, 60, 4)]  # type: ignore[attr-defined]
    # On an opaque background the cutout is encoded on its own, and differs from the composite.
    encodes.clear()
    options = JobOptions(background="red", outputs=[OutputKind.COMPOSITE, OutputKind.CUTOUT])
    opaque = render_outputs(decoded, _matte(), options)
    assert len(encodes) == 1
    formats = (opaque[OutputKind.COMPOSITE].format, opaque[OutputKind.CUTOUT].format)
    assert formats == (OutputFormat.JPEG, OutputFormat.PNG)
