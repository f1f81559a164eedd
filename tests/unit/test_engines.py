"""Choosing an engine and a precision, the on-disk cache and the settings that steer them, with fake
engines (the real ones are built from the fixtures in tests/conformance)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from common.settings import Settings
from worker.engines.base import Engine, EngineUnavailable, Precision, normalization_lut, to_network_input
from worker.engines.cache import EngineCache, file_sha256
from worker.engines.precision_check import check_precision, matte_difference
from worker.engines.selection import EngineChoice, choose_engine, choose_precision
from worker.engines.torch_engine import ieee_fp32_on_cuda, normalization_table
from worker.modnet import MODNet
from worker.runtime import ModelRunner, largest_usual_size, reduced_mode


class FakeEngine(Engine):
    """Returns the torch reference's matte plus ``offset`` (clipped like a real matte is not)."""

    def __init__(
        self, name: str, reference: Engine, offset: float = 0.0, precision: Precision = Precision.FP32
    ) -> None:
        self.name, self.reference, self.offset, self.precision = name, reference, offset, precision
        self.faster_offset: float | None = None

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.reference.run(x) + np.float32(self.offset)

    def reduced(self) -> Engine | None:
        if self.faster_offset is None:
            return None
        return FakeEngine(self.name, self.reference, self.faster_offset, Precision.BF16)


@pytest.fixture(scope="module")
def model() -> MODNet:
    torch.manual_seed(0)
    return MODNet().eval()


@pytest.fixture(scope="module")
def reference(model: MODNet) -> Engine:
    from worker.engines.torch_engine import TorchEngine

    return TorchEngine(model, torch.device("cpu"))


def test_the_numpy_normalization_is_the_torch_one_exactly() -> None:
    assert np.array_equal(normalization_lut(), normalization_table(torch.device("cpu")).numpy())
    images = [np.arange(64 * 32 * 3, dtype=np.uint32).reshape(64, 32, 3).astype(np.uint8)] * 2
    x = to_network_input(images)
    assert x.shape == (2, 3, 64, 32) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x[0, 1, 0, 0] == normalization_lut()[images[0][0, 0, 1]]


def test_fp32_on_cuda_is_set_to_ieee_not_tf32() -> None:
    """torch runs cuDNN's fp32 convolutions in TF32 unless told otherwise; the CUDA engine tells it."""
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = conv.fp32_precision, matmul.fp32_precision
    try:
        conv.fp32_precision = matmul.fp32_precision = "tf32"
        ieee_fp32_on_cuda()
        assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
    finally:
        conv.fp32_precision, matmul.fp32_precision = before


def test_auto_takes_the_first_cpu_engine_that_builds_and_agrees(model: MODNet, reference: Engine) -> None:
    built: list[str] = []

    def build(name: str, *_args: object, **_kwargs: object) -> Engine:
        built.append(name)
        if name == "openvino":
            raise EngineUnavailable("the openvino package is not installed")
        return FakeEngine(name, reference, offset=5e-4)

    engine, reason = choose_engine(model, torch.device("cpu"), "auto", build=build)
    assert engine.name == "onnxruntime" and built == ["openvino", "onnxruntime"]
    assert "openvino: the openvino package is not installed" in reason


def test_auto_refuses_an_engine_that_strays_from_torch(model: MODNet, reference: Engine) -> None:
    def build(name: str, *_args: object, **_kwargs: object) -> Engine:
        return FakeEngine(name, reference, offset=2e-3)

    engine, reason = choose_engine(model, torch.device("cpu"), "auto", build=build)
    assert engine.name == "torch" and engine.precision is Precision.FP32
    assert "openvino: 2.0e-03 from torch" in reason and "onnxruntime: 2.0e-03 from torch" in reason


def test_an_explicit_engine_is_built_or_fails_loudly(model: MODNet) -> None:
    def build(name: str, *_args: object, **_kwargs: object) -> Engine:
        raise EngineUnavailable(f"no {name} here")

    with pytest.raises(EngineUnavailable, match="no openvino here"):
        choose_engine(model, torch.device("cpu"), "openvino", build=build)


def test_cpu_only_engines_refuse_cuda(model: MODNet) -> None:
    from worker.engines.selection import build_named

    with pytest.raises(EngineUnavailable, match="CPU only"):
        build_named("openvino", model, torch.device("cuda"))
    with pytest.raises(ValueError, match="unknown engine"):
        build_named("tensorrt", model, torch.device("cpu"))


@pytest.mark.parametrize(
    ("faster_offset", "tolerance", "expected"),
    [(0.004, 2e-2, Precision.BF16), (0.012, 2e-2, Precision.FP32), (0.012, 3e-2, Precision.BF16)],
)
def test_the_self_check_keeps_the_faster_precision_only_under_half_the_tolerance(
    reference: Engine, faster_offset: float, tolerance: float, expected: Precision
) -> None:
    fake = FakeEngine("openvino", reference)
    fake.faster_offset = faster_offset
    chosen, check, reason = choose_precision(fake, "auto", tolerance=tolerance, check_size=(64, 64))
    assert chosen.precision is expected
    assert check is not None and check.mean == pytest.approx(faster_offset, rel=1e-3)
    assert reason.startswith("bf16 passed" if expected is Precision.BF16 else "fp32: bf16 failed")
    record = EngineChoice(chosen, "auto: openvino", check, reason).record()
    assert record["precision"] == expected.value and record["precision_check_passed"] in ("true", "false")
    assert float(record["precision_check_mean"]) == pytest.approx(faster_offset, rel=1e-2)


def test_no_faster_precision_means_fp32_without_a_check(reference: Engine) -> None:
    chosen, check, reason = choose_precision(FakeEngine("onnxruntime", reference), "auto", check_size=(64, 64))
    assert chosen.precision is Precision.FP32 and check is None and "no faster precision" in reason


def test_matte_difference_clips_like_the_pipeline() -> None:
    a = np.array([[1.2, 0.5]], np.float32)
    b = np.array([[1.0, 0.25]], np.float32)
    mean, p99 = matte_difference(a, b)
    assert mean == pytest.approx(0.125) and p99 == pytest.approx(0.2475)


def test_check_precision_reports_the_worst_image(reference: Engine) -> None:
    class Worse(FakeEngine):
        def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
            return [m + (0.1 if images[0].mean() > 100 else 0.0) for m in super().predict(images)]

    dark, light = np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 200, np.uint8)
    check = check_precision(reference, Worse("x", reference), [dark, light], tolerance=1.0)
    assert check.mean == pytest.approx(0.1, abs=1e-3) and check.images == 2


def test_reduced_mode_follows_an_explicit_cpu_bf16_on_the_cpu() -> None:
    assert reduced_mode(Settings(device="cpu")) == "auto"
    assert reduced_mode(Settings(device="cpu", reduced_precision="off")) == "off"
    assert reduced_mode(Settings(device="cpu", cpu_bf16="off")) == "off"
    assert reduced_mode(Settings(device="cpu", cpu_bf16="on", reduced_precision="off")) == "on"
    assert largest_usual_size(512, 1024) == (768, 512)


def test_cache_entries_are_keyed_published_whole_and_pruned(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path, keep=2)
    assert cache.entry("openvino", "1.0", "aa") is None

    def fail(folder: Path) -> None:
        (folder / "half").write_text("x")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError):
        cache.store("openvino", "1.0", "aa", fail)
    assert cache.entry("openvino", "1.0", "aa") is None
    assert not [p for p in (tmp_path / "openvino").iterdir() if p.name.startswith(".building")]
    for sha in ("aa", "bb", "cc"):
        cache.store("openvino", "1.0", sha, lambda folder, sha=sha: (folder / "model").write_text(sha))
    assert cache.entry("openvino", "1.0", "cc") is not None
    assert cache.entry("openvino", "2.0", "cc") is None  # another engine version is another entry
    assert cache.entry("openvino", "1.0", "aa") is None  # pruned: only the 2 newest are kept
    assert EngineCache(None).store("openvino", "1.0", "aa", lambda _folder: None) is None


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "weights.ckpt"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_the_runner_predicts_through_whatever_engine_it_was_given(model: MODNet, reference: Engine) -> None:
    runner = ModelRunner(model, torch.device("cpu"), engine=FakeEngine("openvino", reference, offset=0.25))
    images = [np.full((64, 64, 3), value, np.uint8) for value in (0, 128, 255)]
    mattes = runner.predict(images)
    assert len(mattes) == 3  # the engine's mattes (the reference's plus its offset), not the model's own
    assert all(np.allclose(got, want + 0.25) for got, want in zip(mattes, reference.predict(images), strict=True))
    assert runner.describe()["engine"] == "openvino" and runner.precision is Precision.FP32
