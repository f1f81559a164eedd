"""The GPU pipeline's code on the CPU: the device pipeline against the numpy pipeline with the same engine,
the host fallback of the JPEG codec (torchvision does not import beside the CPU build of torch), the
JFIF density of nvJPEG's output, and the CUDA-graph bookkeeping."""

from __future__ import annotations

import io
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.imaging import decode_image
from common.options import JobOptions, OutputKind
from common.pipeline import PreparedPhoto, RenderedOutputs, finish, prepare, replace_photo
from common.settings import Settings
from worker import device_pipeline
from worker.cuda_graphs import GraphedForward, graph_batch_sizes, padded_batch
from worker.device_images import DeviceCodec, plain_jpeg_dpi, torchvision_io, with_jfif_density
from worker.device_pipeline import DevicePipeline
from worker.engines.torch_engine import TorchEngine
from worker.modnet import MODNet
from worker.runtime import ModelRunner

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def engine() -> TorchEngine:
    torch.manual_seed(0)
    return TorchEngine(MODNet().eval(), CPU)


@pytest.fixture
def settings() -> Settings:
    return Settings(model_path=Path("unused.ckpt"), inference_ref_size=64, inference_max_side=256)


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    return np.clip(smooth.astype(np.int16) + rng.integers(-8, 9, smooth.shape), 0, 255).astype(np.uint8)


def jpeg(rgb: np.ndarray, **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=95, **save)
    return buffer.getvalue()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def levels_apart(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())


def assert_same_outputs(actual: RenderedOutputs, expected: RenderedOutputs, size: tuple[int, int], levels: int) -> None:
    assert set(actual.items) == set(expected.items)
    for kind in expected.items:
        assert (actual[kind].height, actual[kind].width) == size
        assert levels_apart(pixels(actual[kind].data), pixels(expected[kind].data)) <= levels, kind
        assert Image.open(io.BytesIO(actual[kind].data)).info["dpi"] == pytest.approx((300, 300), abs=0.01)


def test_one_photo_end_to_end_is_what_the_numpy_pipeline_renders(engine: TorchEngine, settings: Settings) -> None:
    """Same engine, same photo, one the network takes at its own size (random weights turn a grey level
    of difference in the network input into much more in the matte; the resize is compared on its own in
    test_torch_postprocess.py): outputs within two grey levels (the foreground estimate's, see there)."""
    data = jpeg(photo(96, 64), dpi=(300, 300))
    options = JobOptions(background="blue", format="png", outputs="composite,cutout,matte")
    expected = replace_photo(data, options, ModelRunner(engine.model, CPU, engine=engine).predict, settings).outputs
    actual = DevicePipeline(engine, settings).replace_photo(data, options)
    assert_same_outputs(actual, expected, (96, 64), 2)


@pytest.fixture(scope="module")
def larger_photo(engine: TorchEngine) -> tuple[bytes, PreparedPhoto, np.ndarray]:
    """A photo the network sees smaller, prepared on the host, with its network matte."""
    settings = Settings(model_path=Path("unused.ckpt"), inference_ref_size=64, inference_max_side=256)
    data = jpeg(photo(300, 200), dpi=(300, 300))
    prepared = prepare(data, settings)
    (small,) = ModelRunner(engine.model, CPU, engine=engine).predict([prepared.network_input])
    return data, prepared, small


@pytest.mark.parametrize(
    ("background", "decontaminate", "levels"),
    [("blue", False, 1), ("#c08040", True, 2), ("blur", True, 2), ("transparent", True, 2)],
)
def test_the_matte_goes_up_to_the_photo_and_the_outputs_are_the_hosts(
    engine: TorchEngine,
    settings: Settings,
    larger_photo: tuple[bytes, PreparedPhoto, np.ndarray],
    background: str,
    decontaminate: bool,
    levels: int,
) -> None:
    """From the same network input, the same outputs: within a grey level, two where the foreground
    estimate enters."""
    data, prepared, small = larger_photo
    options = JobOptions(
        background=background, format="png", outputs="composite,cutout,matte", decontaminate=decontaminate
    )
    expected = finish(prepared, small, options).outputs
    pipeline = DevicePipeline(engine, settings)
    on_device = pipeline.prepare(data)
    assert levels_apart(on_device.network_input.permute(1, 2, 0).numpy(), prepared.network_input) <= 1
    (matte,) = pipeline.predict([torch.from_numpy(prepared.network_input).permute(2, 0, 1)])
    np.testing.assert_allclose(matte.numpy(), small, atol=1e-6)
    actual = pipeline.finish(on_device, matte, options)
    assert_same_outputs(actual, expected, (300, 200), levels)


def test_a_batch_of_photos_finishes_as_each_alone(engine: TorchEngine, settings: Settings) -> None:
    pipeline = DevicePipeline(engine, settings)
    photos = [pipeline.prepare(jpeg(photo(144, 96, seed=s))) for s in (2, 3)]
    mattes = [pipeline.predict([p.network_input])[0] for p in photos]
    options = JobOptions(background="blur", format="png")
    together = [rendered.encode() for rendered in pipeline.render_batch(photos, mattes, options)]
    for index, one in enumerate(photos):
        alone = pipeline.finish(one, mattes[index], options)
        composite = OutputKind.COMPOSITE
        assert levels_apart(pixels(together[index][composite].data), pixels(alone[composite].data)) <= 1


def test_a_photo_that_runs_out_of_device_memory_is_finished_on_the_cpu(
    engine: TorchEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = DevicePipeline(engine, settings)
    one = pipeline.prepare(jpeg(photo(96, 64, seed=4)))
    (matte,) = pipeline.predict([one.network_input])
    options = JobOptions(background="blue", format="png")
    expected = pipeline.finish(one, matte, options)[OutputKind.COMPOSITE].data
    real = device_pipeline.estimate_foreground
    calls: list[torch.device] = []

    def out_of_memory_once(image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        calls.append(image.device)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("out of memory (simulated)")
        return real(image, alpha)

    monkeypatch.setattr(device_pipeline, "estimate_foreground", out_of_memory_once)
    assert pipeline.finish(one, matte, options)[OutputKind.COMPOSITE].data == expected
    assert calls == [CPU, CPU]


class OutOfMemoryCodec(DeviceCodec):
    """nvJPEG as it fails when the device has no room left: every encode runs out of memory."""

    def encode_jpeg(self, rgb: torch.Tensor, *, quality: int, dpi: tuple[float, float] | None) -> bytes:
        raise torch.OutOfMemoryError("out of memory (simulated)")


def test_a_jpeg_that_runs_out_of_device_memory_is_encoded_on_the_host(engine: TorchEngine, settings: Settings) -> None:
    host = DevicePipeline(engine, settings)
    failing = DevicePipeline(engine, settings, codec=OutOfMemoryCodec(CPU))
    one = host.prepare(jpeg(photo(96, 64, seed=5)))
    (matte,) = host.predict([one.network_input])
    options = JobOptions(background="blue", format="jpeg")
    expected = host.render(one, matte, options).encode()[OutputKind.COMPOSITE].data
    assert failing.render(one, matte, options).encode()[OutputKind.COMPOSITE].data == expected


def test_the_worker_takes_the_device_pipeline_only_on_a_cuda_torch_engine(engine: TorchEngine) -> None:
    runner = ModelRunner(engine.model, CPU, engine=engine)
    assert DevicePipeline.for_runner(runner, Settings(model_path=Path("unused.ckpt"))) is None
    off = Settings(model_path=Path("unused.ckpt"), gpu_pipeline=False)
    assert DevicePipeline.for_runner(runner, off) is None


# --- the codec ----------------------------------------------------------------------------------


def test_without_torchvision_the_codec_falls_back_to_the_host(settings: Settings) -> None:
    if torchvision_io() is not None:
        pytest.skip("torchvision imports here: the fallback is not what runs")
    codec = DeviceCodec(torch.device("cuda"))  # detection only: nothing touches a GPU
    assert not codec.uses_nvjpeg
    data = jpeg(photo(120, 90), dpi=(72, 72))
    image = DeviceCodec(CPU).decode(data, settings)
    decoded = decode_image(data, max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)
    assert np.array_equal(image.rgb.permute(1, 2, 0).numpy(), decoded.rgb)
    assert image.dpi == decoded.dpi == (72, 72)
    assert image.alpha is None


def exif_rotated(data: bytes) -> bytes:
    im = Image.open(io.BytesIO(data))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def with_icc(rgb: np.ndarray) -> bytes:
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return jpeg(rgb, icc_profile=profile)


def test_only_plain_jpegs_go_to_nvjpeg(settings: Settings) -> None:
    """The routing, with a stand-in for torchvision.io that decodes on the host and records its calls."""
    calls: list[str] = []

    def decode_jpeg(encoded: torch.Tensor, *, mode: object, device: torch.device) -> torch.Tensor:
        calls.append(str(device))
        return torch.from_numpy(np.array(Image.open(io.BytesIO(encoded.numpy().tobytes())).convert("RGB"))).permute(
            2, 0, 1
        )

    stand_in = types.SimpleNamespace(
        decode_jpeg=decode_jpeg, encode_jpeg=None, ImageReadMode=types.SimpleNamespace(RGB="RGB")
    )
    codec = DeviceCodec(torch.device("cuda"), tvio=stand_in)  # type: ignore[arg-type]
    codec.device = CPU  # host fallbacks land on the CPU here
    rgb = photo(120, 90)
    plain = jpeg(rgb, dpi=(300, 300))
    assert codec.decode(plain, settings).dpi == (300, 300) and calls == ["cpu"]
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, "PNG")
    for data in (exif_rotated(plain), with_icc(rgb), png.getvalue()):
        image = codec.decode(data, settings)
        decoded = decode_image(data, max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)
        assert np.array_equal(image.rgb.permute(1, 2, 0).numpy(), decoded.rgb)
    assert calls == ["cpu"]  # none of them went to the stand-in
    assert codec.decode(exif_rotated(plain), settings).height == 90  # rotated upright by the host decoder


def test_plain_jpeg_classification() -> None:
    rgb = photo(64, 48)
    assert plain_jpeg_dpi(jpeg(rgb, dpi=(200, 100))) == (True, (200, 100))
    assert plain_jpeg_dpi(exif_rotated(jpeg(rgb)))[0] is False
    assert plain_jpeg_dpi(with_icc(rgb))[0] is False
    grey = io.BytesIO()
    Image.fromarray(rgb[..., 0]).save(grey, "JPEG")
    assert plain_jpeg_dpi(grey.getvalue())[0] is False


def test_jfif_density_is_rewritten_or_inserted() -> None:
    data = jpeg(photo(64, 48))
    assert Image.open(io.BytesIO(with_jfif_density(data, (300, 299.6)))).info["dpi"] == pytest.approx((300, 300))
    assert data[2:4] == b"\xff\xe0"
    without_app0 = data[:2] + data[4 + int.from_bytes(data[4:6], "big") :]
    assert b"JFIF" not in without_app0[:20]
    patched = with_jfif_density(without_app0, (350, 350))
    im = Image.open(io.BytesIO(patched))
    assert im.info["dpi"] == pytest.approx((350, 350))
    assert np.array_equal(np.asarray(im), pixels(data))
    assert with_jfif_density(data, None) == data


# --- CUDA graphs ---------------------------------------------------------------------------------


def test_graph_batch_sizes_and_padding() -> None:
    assert graph_batch_sizes(8) == (1, 2, 4, 8)
    assert graph_batch_sizes(6) == (1, 2, 4, 6)
    assert graph_batch_sizes(1) == (1,)
    assert padded_batch(3, (1, 2, 4, 8)) == 4
    assert padded_batch(8, (1, 2, 4, 8)) == 8
    assert padded_batch(9, (1, 2, 4, 8)) is None


def test_off_cuda_every_pass_is_the_engines_own(engine: TorchEngine) -> None:
    graphed = GraphedForward(engine, [(32, 32)], 4)
    assert graphed.capture_all() == 0
    x = torch.randn(1, 3, 32, 32)
    assert graphed.graph_key(x) is None
    torch.testing.assert_close(graphed(x), engine.forward(x), rtol=0, atol=0)
