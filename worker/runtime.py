"""MODNet kept resident: load once per process, warm up, turn uint8 images into mattes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common.settings import Settings
from common.sizing import colab_inference_size
from worker.checkpoint import load_modnet
from worker.modnet import MODNet

log = logging.getLogger(__name__)


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"  # CUDA: weights and activations in half precision
    BF16 = "bf16"  # CPU: bf16 autocast on CPUs with native bf16 instructions


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where bf16 matmuls beat fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def choose_precision(device: torch.device, cpu_bf16: str = "off") -> Precision:
    if device.type == "cuda":
        return Precision.FP16
    if cpu_bf16 == "on" or (cpu_bf16 == "auto" and cpu_has_native_bf16()):
        return Precision.BF16
    return Precision.FP32


def normalization_table(device: torch.device) -> torch.Tensor:
    """uint8 -> [-1, 1] exactly as the official preprocessing computes it in float32:
    true division by 255, then (x - 0.5) / 0.5 (torchvision ToTensor + Normalize)."""
    levels = torch.arange(256, dtype=torch.float32) / 255
    return ((levels - 0.5) / 0.5).to(device)


class ModelRunner:
    """One resident MODNet and the tensor step around it. Thread-safe: forward passes are serialized."""

    def __init__(self, model: MODNet, device: torch.device, precision: Precision = Precision.FP32) -> None:
        self.device = device
        self.precision = precision
        self.model = model.to(device).eval()
        if precision is Precision.FP16:
            self.model.half()
        self._table = normalization_table(device)
        self._lock = threading.Lock()
        self.forward_passes = 0

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str = "auto",
        *,
        cpu_bf16: str = "off",
        threads: int | None = None,
    ) -> ModelRunner:
        if threads is not None:
            torch.set_num_threads(threads)
        dev = resolve_device(device)
        precision = choose_precision(dev, cpu_bf16)
        runner = cls(load_modnet(path, "cpu"), dev, precision)
        log.info("MODNet loaded from %s on %s (%s)", path, dev, precision.value)
        return runner

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRunner:
        """The runner the settings describe (model path, device, CPU bf16, threads)."""
        return cls.load(
            settings.model_path, settings.device, cpu_bf16=settings.cpu_bf16, threads=settings.torch_threads
        )

    def _autocast(self) -> AbstractContextManager[object]:
        if self.precision is Precision.BF16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    def normalize(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Stack (H,W,3) uint8 images into a normalized (B,3,H,W) float32 tensor on the device."""
        batch = torch.from_numpy(np.stack(images)).to(self.device, non_blocking=True)
        return self._table[batch.long()].permute(0, 3, 1, 2).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) normalized float32 -> (B,1,H,W) float32 matte, in this runner's precision."""
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"MODNet needs sides that are multiples of 32, got {tuple(x.shape[-2:])}")
        if self.precision is Precision.FP16:
            x = x.half()
        with self._lock, torch.inference_mode(), self._autocast():
            matte = self.model(x)
            self.forward_passes += 1
        return matte.float()

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Mattes (H,W) float32 in [0,1] for same-shape (H,W,3) uint8 images, H and W multiples of 32."""
        if not images:
            return []
        shapes = {img.shape for img in images}
        if len(shapes) != 1:
            raise ValueError(f"a batch must hold images of one shape, got {sorted(shapes)}")
        mattes = self.forward(self.normalize(images))[:, 0].cpu().numpy()
        if len(mattes) != len(images):
            raise RuntimeError(f"model returned {len(mattes)} mattes for {len(images)} images")
        return list(mattes)

    def warm_up(self, height: int = 512, width: int = 512) -> None:
        """One pass on a blank image so the first real request does not pay for kernel selection."""
        self.predict([np.zeros((height, width, 3), np.uint8)])
        self.forward_passes = 0


def colab_matte(runner: ModelRunner, rgb: np.ndarray, *, ref_size: int = 512) -> np.ndarray:
    """The official colab procedure, operation for operation: normalize at full size, 'area'
    resize to the colab size, matte, 'area' resize back. Returns (H,W) float32."""
    height, width = rgb.shape[:2]
    x = runner.normalize([rgb])
    rh, rw = colab_inference_size(height, width, ref_size=ref_size)
    x = F.interpolate(x, size=(rh, rw), mode="area")
    matte = runner.forward(x)
    matte = F.interpolate(matte, size=(height, width), mode="area")
    return matte[0, 0].cpu().numpy()
