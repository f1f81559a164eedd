"""The torch post-processing (worker/torch_postprocess/) against the numpy path of ``common/``, on the
CPU: the same algorithms, so the 8-bit outputs agree within a grey level.

The numpy path is compared as it is when the test runs. Its foreground estimation may itself move by up
to a grey level from the exact blur-fusion (tiles of soft pixels, a quarter-resolution large pass) while
the torch one computes it exactly, so outputs that depend on the estimate are held to 2/255, the two
allowances together; everything else to 1/255.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from common.backgrounds import BackgroundKind, BackgroundSpec, blurred_background, cover_fit, parse_background
from common.imaging import DecodedImage
from common.options import JobOptions, OutputKind
from common.pipeline import decode, full_resolution_matte, network_input, render_outputs
from common.settings import Settings
from worker.torch_postprocess import compositing, filters, resize
from worker.torch_postprocess.backgrounds import blurred_background as blurred_background_tensor
from worker.torch_postprocess.backgrounds import render_background
from worker.torch_postprocess.compositing import composite, cutout, estimate_foreground, to_unit

ONE_LEVEL = 1
ESTIMATE_LEVELS = 2  # the numpy estimate's own allowance (1/255) plus this one's (1/255)


def as_batch(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) uint8."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0)


def as_alpha(alpha: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))[None, None]


def as_image(x: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) -> (H, W, C)."""
    return x[0].permute(1, 2, 0).numpy()


def levels_apart(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())


def portrait_matte(height: int, width: int, *, band: float, seed: int = 0) -> np.ndarray:
    """A trained-like matte: 0 and 1 almost everywhere, a soft band round a head and shoulders, with
    wisps of 'hair' (a sigmoid of a noisy signed distance)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    head = 1 - np.hypot((xx - width / 2) / (0.22 * width), (yy - 0.38 * height) / (0.2 * height))
    shoulders = np.minimum((yy - 0.62 * height) / (0.1 * height), 1 - np.abs(xx - width / 2) / (0.45 * width))
    inside = np.maximum(head * 0.2 * width, shoulders * 0.1 * height)
    noise = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 2) * 6
    return (0.5 + 0.5 * np.tanh((inside + noise) / (2 * band))).astype(np.float32)  # the logistic sigmoid


def synthetic_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour fields with some texture, as a photo's backgrounds and clothes have."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 40), max(2, width // 40), 3), dtype=np.uint8)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.integers(-12, 13, (height, width, 3))
    return np.clip(smooth.astype(np.int32) + grain, 0, 255).astype(np.uint8)


def decoded_png(data: bytes) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(data)))


# --- filters and resizes ------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [1, 6, 9, 90, 141, 400])
def test_box_blur_is_opencvs_including_kernels_wider_than_the_image(radius: int) -> None:
    x = np.random.default_rng(radius).random((5, 37, 53), dtype=np.float32)
    expected = np.stack([cv2.blur(channel, (2 * radius + 1, 2 * radius + 1)) for channel in x])
    actual = filters.box_blur(torch.from_numpy(x)[None], radius)[0].numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-6)


@pytest.mark.parametrize("sigma", [3.0, 4.0, 4.6, 12.5])
def test_gaussian_blur_is_opencvs(sigma: float) -> None:
    x = np.random.default_rng(1).random((61, 47), dtype=np.float32)
    expected = cv2.GaussianBlur(x, (0, 0), sigma)
    actual = filters.gaussian_blur(torch.from_numpy(x)[None, None], sigma)[0, 0].numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((1600, 1200), (672, 512)),  # shrink by non-integer factors: OpenCV's fractional area weights
        ((1024, 1024), (512, 512)),  # by exactly 2
        ((300, 220), (512, 384)),  # enlarge: bilinear
        ((520, 700), (512, 704)),  # shrink one side, enlarge the other: made on the host
    ],
)
def test_network_input_matches_the_numpy_resize(shape: tuple[int, int], size: tuple[int, int]) -> None:
    rgb = synthetic_photo(*shape)
    expected = network_input(rgb, size)
    actual = as_image(resize.network_input_tensor(as_batch(rgb), size))
    assert actual.shape == expected.shape
    assert levels_apart(actual, expected) <= ONE_LEVEL


def test_the_matte_goes_up_to_full_resolution_as_on_the_host() -> None:
    small = portrait_matte(672, 512, band=3.0)
    decoded = DecodedImage(rgb=np.zeros((1600, 1200, 3), np.uint8), alpha=None, dpi=None, source_format="JPEG")
    expected = full_resolution_matte(small, decoded)
    actual = resize.resize_linear(as_alpha(small), (1600, 1200)).clamp(0, 1)[0, 0].numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-5)


@pytest.mark.parametrize(("source", "canvas"), [((500, 900), (300, 400)), ((80, 100), (300, 400))])
def test_cover_fit_matches_the_numpy_one(source: tuple[int, int], canvas: tuple[int, int]) -> None:
    image = synthetic_photo(*source, seed=3)
    expected = cover_fit(image, canvas)
    actual = resize.cover_fit_tensor(as_batch(image)[0], canvas).permute(1, 2, 0).numpy()
    assert actual.shape == expected.shape
    assert levels_apart(actual, expected) <= ONE_LEVEL


@pytest.mark.parametrize("shape", [(400, 300), (1600, 1200)])
def test_blurred_background_matches_the_numpy_one(shape: tuple[int, int]) -> None:
    rgb = synthetic_photo(*shape, seed=4)
    alpha = portrait_matte(*shape, band=2.0)
    expected = blurred_background(rgb, alpha, (shape[1], shape[0]))
    actual = as_image(blurred_background_tensor(to_unit(as_batch(rgb)), as_alpha(alpha)))
    assert levels_apart(compositing_levels(actual), compositing_levels(expected)) <= ONE_LEVEL


def compositing_levels(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


# --- the outputs, against the numpy pipeline's ----------------------------------------------------


def torch_outputs(
    decoded: DecodedImage, matte: np.ndarray, spec: BackgroundSpec, *, decontaminate: bool = True
) -> tuple[np.ndarray | None, np.ndarray]:
    """(composite or None for transparent, cutout) from the torch path, as uint8 (H, W, C)."""
    image = to_unit(as_batch(decoded.rgb))
    alpha = as_alpha(matte)
    foreground = estimate_foreground(image, alpha) if decontaminate else image
    rgba = as_image(cutout(foreground, alpha))
    if spec.kind is BackgroundKind.TRANSPARENT:
        return None, rgba
    background = render_background(spec, image, alpha)
    return as_image(composite(foreground, alpha, background)), rgba


def numpy_outputs(
    decoded: DecodedImage, matte: np.ndarray, spec: BackgroundSpec, *, decontaminate: bool = True
) -> tuple[np.ndarray | None, np.ndarray]:
    """The same from ``common.pipeline.render_outputs``, as PNGs decoded again."""
    transparent = spec.kind is BackgroundKind.TRANSPARENT
    options = JobOptions(
        background="transparent" if transparent else "blue",
        format="png",
        outputs="composite,cutout",
        decontaminate=decontaminate,
    )
    rendered = render_outputs(decoded, matte, options, spec)
    rgba = decoded_png(rendered[OutputKind.CUTOUT].data)
    composite_png = None if transparent else decoded_png(rendered[OutputKind.COMPOSITE].data)
    return composite_png, rgba


def assert_outputs_agree(decoded: DecodedImage, matte: np.ndarray, spec: BackgroundSpec, decontaminate: bool) -> None:
    expected_composite, expected_cutout = numpy_outputs(decoded, matte, spec, decontaminate=decontaminate)
    actual_composite, actual_cutout = torch_outputs(decoded, matte, spec, decontaminate=decontaminate)
    bound = ESTIMATE_LEVELS if decontaminate else ONE_LEVEL
    if expected_composite is not None:
        assert actual_composite is not None
        assert levels_apart(actual_composite, expected_composite) <= bound
    # A cut-out's colour is seen through its alpha (where the matte is ~0 it is invisible, and the numpy
    # path may not estimate it there at all): compare the colours premultiplied, as a viewer shows them.
    assert levels_apart(actual_cutout[..., 3], expected_cutout[..., 3]) <= ONE_LEVEL
    assert levels_apart(premultiplied(actual_cutout), premultiplied(expected_cutout)) <= bound


def premultiplied(rgba: np.ndarray) -> np.ndarray:
    return np.rint(rgba[..., :3] * (rgba[..., 3:] / 255.0)).astype(np.uint8)


BACKGROUNDS = ["blue", "#c08040", "blur", "image", "transparent"]


def background_spec(name: str, seed: int = 9) -> BackgroundSpec:
    image = synthetic_photo(530, 410, seed=seed) if name == "image" else None
    return parse_background(name, image=image)


@pytest.mark.parametrize("background", BACKGROUNDS)
@pytest.mark.parametrize("decontaminate", [True, False])
def test_synthetic_portrait_outputs_agree_with_the_numpy_path(background: str, decontaminate: bool) -> None:
    rgb = synthetic_photo(480, 360, seed=5)
    decoded = DecodedImage(rgb=rgb, alpha=None, dpi=None, source_format="PNG")
    assert_outputs_agree(decoded, portrait_matte(480, 360, band=1.5), background_spec(background), decontaminate)


@pytest.mark.parametrize("name", ["test1.jpg", "test2.jpg", "test4.jpg"])
def test_fixture_portrait_outputs_agree_with_the_numpy_path(face_fixtures: Path, name: str) -> None:
    settings = Settings(model_path=Path("unused.ckpt"))
    decoded = decode(face_fixtures / name, settings)
    if name == "test2.jpg":
        # A real segmentation of this photo, softened at its edge as a matting network's is.
        cut = np.asarray(Image.open(face_fixtures / "test2.cutout.png"))[..., 3].astype(np.float32) / 255
        matte = cv2.GaussianBlur(cut, (0, 0), 1.5)
    else:
        matte = portrait_matte(decoded.height, decoded.width, band=1.5)
    matte = full_resolution_matte(matte, decoded)  # with the photo's own transparency, as the pipeline has it
    for background in ("blue", "blur", "transparent"):
        assert_outputs_agree(decoded, matte, background_spec(background), decontaminate=True)


def test_a_batch_gives_each_photo_what_it_gets_alone() -> None:
    photos = [synthetic_photo(240, 180, seed=s) for s in (1, 2)]
    mattes = [portrait_matte(240, 180, band=1.5, seed=s) for s in (1, 2)]
    image = to_unit(torch.cat([as_batch(p) for p in photos]))
    alpha = torch.cat([as_alpha(m) for m in mattes])
    together = compositing.estimate_foreground(image, alpha)
    for index in range(2):
        alone = compositing.estimate_foreground(image[index : index + 1], alpha[index : index + 1])
        torch.testing.assert_close(together[index : index + 1], alone)
