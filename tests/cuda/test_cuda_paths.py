"""The CUDA paths of a GPU worker, on a real GPU: CUDA graphs against eager passes, the device pipeline
against the same pipeline on the CPU, pinned copies, nvJPEG where torchvision imports, fp16 behind the
self-check, and the fallback to the CPU when the device is out of memory.

They skip on a machine without CUDA (CI has none): ``bench/gpu_check.sh`` runs them, with
``bench/bench_gpu.py``, on a GPU machine in one go.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.options import JobOptions, OutputKind
from common.settings import Settings
from worker import device_pipeline
from worker.checkpoint import load_modnet
from worker.cuda_graphs import GraphedForward
from worker.device_images import DeviceCodec, download, torchvision_io, upload
from worker.device_pipeline import DevicePipeline
from worker.engines.base import Precision
from worker.engines.calibration import calibration_portraits
from worker.engines.precision_check import check_precision
from worker.engines.torch_engine import TorchEngine

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")

CUDA = torch.device("cuda")
CPU = torch.device("cpu")
SHAPE = (512, 384)  # a shape bucket of the default settings (3:4)


@pytest.fixture(scope="module")
def cuda_engine(official_format_checkpoint: Path) -> TorchEngine:
    return TorchEngine(load_modnet(official_format_checkpoint, "cpu"), CUDA)


@pytest.fixture(scope="module")
def cpu_engine(official_format_checkpoint: Path) -> TorchEngine:
    return TorchEngine(load_modnet(official_format_checkpoint, "cpu"), CPU)


@pytest.fixture
def settings() -> Settings:
    return Settings(model_path=Path("unused.ckpt"))


def photo_jpeg(height: int, width: int, seed: int, **save: object) -> bytes:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    smooth = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    smooth.save(buffer, "JPEG", quality=95, **save)
    return buffer.getvalue()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int32)


def test_the_engine_runs_on_the_gpu_as_on_the_cpu(cuda_engine: TorchEngine, cpu_engine: TorchEngine) -> None:
    # IEEE fp32, not TF32 (torch's default for cuDNN convolutions): fp32 is the reference.
    if hasattr(torch.backends.cudnn, "conv"):
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    else:
        assert not torch.backends.cudnn.allow_tf32
    x = torch.randn(2, 3, *SHAPE)
    on_gpu = cuda_engine.forward(x.to(CUDA)).cpu()
    on_cpu = cpu_engine.forward(x)
    assert on_gpu.shape == (2, 1, *SHAPE)
    assert float((on_gpu - on_cpu).abs().max()) < 1e-3


def test_cuda_graphs_replay_what_eager_passes_compute(cuda_engine: TorchEngine) -> None:
    graphed = GraphedForward(cuda_engine, [SHAPE], max_batch_size=4)
    assert graphed.capture_all() == 3  # batch sizes 1, 2 and 4 of the one shape
    for count in (1, 3, 4):  # 3 runs padded in the graph of 4
        x = torch.randn(count, 3, *SHAPE, device=CUDA)
        assert graphed.graph_key(x) is not None
        replayed = graphed(x)
        eager = cuda_engine.forward(x)
        assert replayed.shape == (count, 1, *SHAPE)
        assert float((replayed - eager).abs().max()) < 1e-4
    other = torch.randn(1, 3, 256, 256, device=CUDA)  # no graph for this shape: eager
    assert graphed.graph_key(other) is None
    assert float((graphed(other) - cuda_engine.forward(other)).abs().max()) == 0.0


def test_a_pinned_copy_reaches_the_device_unchanged() -> None:
    array = np.random.default_rng(1).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    tensor = upload(array, CUDA)
    assert tensor.device.type == "cuda"
    np.testing.assert_array_equal(download(tensor.permute(2, 0, 1)), array)


def test_the_device_pipeline_on_the_gpu_renders_what_it_renders_on_the_cpu(
    cuda_engine: TorchEngine, cpu_engine: TorchEngine, settings: Settings
) -> None:
    # The host decoder on both sides (nvJPEG's pixels may differ by a few levels: tested below).
    on_gpu = DevicePipeline(cuda_engine, settings, codec=DeviceCodec(CUDA, detect=False))
    on_cpu = DevicePipeline(cpu_engine, settings, codec=DeviceCodec(CPU, detect=False))
    data = photo_jpeg(640, 480, seed=2, dpi=(300, 300))
    options = JobOptions(background="blue", format="png", outputs=["composite", "cutout", "matte"])
    outputs = {}
    for name, pipeline in (("gpu", on_gpu), ("cpu", on_cpu)):
        photo = pipeline.prepare(data)
        (matte,) = pipeline.predict([photo.network_input])
        outputs[name] = pipeline.render(photo, matte, options).encode()
    for kind in (OutputKind.COMPOSITE, OutputKind.CUTOUT, OutputKind.MATTE):
        gpu, cpu = outputs["gpu"][kind], outputs["cpu"][kind]
        assert (gpu.width, gpu.height) == (480, 640)
        assert int(np.abs(pixels(gpu.data) - pixels(cpu.data)).max()) <= 2, kind


def test_a_batch_on_the_gpu_renders_each_photo_as_alone(cuda_engine: TorchEngine, settings: Settings) -> None:
    pipeline = DevicePipeline(cuda_engine, settings)
    photos = [pipeline.prepare(photo_jpeg(480, 360, seed=seed)) for seed in (3, 4, 5)]
    mattes = pipeline.predict([photo.network_input for photo in photos])
    options = JobOptions(background="white", format="jpeg")
    together = [one.encode() for one in pipeline.render_batch(photos, mattes, options)]
    for photo, matte, batched in zip(photos, mattes, together, strict=True):
        alone = pipeline.render(photo, matte, options).encode()
        composite = OutputKind.COMPOSITE
        assert int(np.abs(pixels(batched[composite].data) - pixels(alone[composite].data)).max()) <= 1


def test_nvjpeg_decodes_and_encodes_within_a_few_levels_of_the_host_codec(settings: Settings) -> None:
    if torchvision_io() is None:
        pytest.skip("torchvision does not import beside this torch: no nvJPEG")
    codec, host = DeviceCodec(CUDA), DeviceCodec(CUDA, detect=False)
    assert codec.uses_nvjpeg
    data = photo_jpeg(400, 300, seed=6, dpi=(300, 300))
    decoded, reference = codec.decode(data, settings), host.decode(data, settings)
    assert decoded.rgb.device.type == "cuda" and decoded.dpi == reference.dpi
    difference = (decoded.rgb.int() - reference.rgb.int()).abs()
    assert float(difference.float().mean()) < 1.0 and int(difference.max()) <= 8
    encoded = codec.encode_jpeg(reference.rgb, quality=95, dpi=(300, 300))
    with Image.open(io.BytesIO(encoded)) as image:
        assert image.format == "JPEG" and image.size == (300, 400)
        assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        again = np.asarray(image.convert("RGB")).astype(np.int32)
    assert float(np.abs(again - download(reference.rgb).astype(np.int32)).mean()) < 3.0


def test_fp16_runs_and_the_self_check_gives_a_verdict(cuda_engine: TorchEngine) -> None:
    half = cuda_engine.reduced()
    assert half is not None and half.precision is Precision.FP16
    check = check_precision(cuda_engine, half, calibration_portraits(*SHAPE))
    assert np.isfinite(check.mean) and np.isfinite(check.p99)
    assert check.mean <= check.p99 + 1e-9
    (matte,) = half.predict([calibration_portraits(*SHAPE)[0]])
    assert matte.shape == SHAPE and float(matte.min()) >= 0.0 and float(matte.max()) <= 1.0


def test_post_processing_out_of_device_memory_finishes_on_the_cpu(
    cuda_engine: TorchEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = DevicePipeline(cuda_engine, settings, codec=DeviceCodec(CUDA, detect=False))
    photo = pipeline.prepare(photo_jpeg(320, 240, seed=7))
    (matte,) = pipeline.predict([photo.network_input])
    options = JobOptions(background="red", format="png")
    expected = pipeline.render(photo, matte, options).encode()[OutputKind.COMPOSITE].data
    real = device_pipeline.estimate_foreground
    devices: list[torch.device] = []

    def out_of_memory_on_the_gpu(image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        devices.append(image.device)
        if image.device.type == "cuda":
            raise torch.OutOfMemoryError("out of memory (simulated)")
        return real(image, alpha)

    monkeypatch.setattr(device_pipeline, "estimate_foreground", out_of_memory_on_the_gpu)
    on_cpu = pipeline.render(photo, matte, options).encode()[OutputKind.COMPOSITE].data
    assert [device.type for device in devices] == ["cuda", "cpu"]
    assert int(np.abs(pixels(on_cpu) - pixels(expected)).max()) <= 2
