"""MODNet in torch eager: the reference every other engine is checked against, and the CUDA engine.

On a GPU a batch is one tensor (real batches); fp16 there is a half-precision copy of the model. On a
CPU with native bf16 the faster precision is bf16 autocast over the same module. fp32 on CUDA is IEEE
fp32: torch's default runs cuDNN's fp32 convolutions in TF32 (a 10-bit mantissa), a reduced precision
no self-check has proven, so a CUDA engine turns it off; the proven faster precision there is fp16.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch

from worker.engines.base import Engine, Precision, check_images, check_sides
from worker.modnet import MODNet


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where bf16 matmuls beat fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def ieee_fp32_on_cuda() -> None:
    """fp32 convolutions and matrix products on CUDA in IEEE fp32, not TF32 (process-wide settings)."""
    if hasattr(torch.backends.cudnn, "conv"):  # torch 2.9 and newer
        torch.backends.cudnn.conv.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def normalization_table(device: torch.device) -> torch.Tensor:
    """uint8 -> [-1, 1] exactly as the official preprocessing computes it in float32:
    true division by 255, then (x - 0.5) / 0.5 (torchvision ToTensor + Normalize)."""
    levels = torch.arange(256, dtype=torch.float32) / 255
    return ((levels - 0.5) / 0.5).to(device)


class TorchEngine(Engine):
    """One resident MODNet module. Thread-safe: forward passes are serialized."""

    name = "torch"

    def __init__(self, model: MODNet, device: torch.device, precision: Precision = Precision.FP32) -> None:
        self.torch_device = device
        self.device = str(device)
        self.precision = precision
        if device.type == "cuda":
            ieee_fp32_on_cuda()
        self.model = model.to(device).eval()
        if precision is Precision.FP16:
            self.model.half()
        self._table = normalization_table(device)
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return f"torch {torch.__version__}"

    def _autocast(self) -> AbstractContextManager[object]:
        if self.precision is Precision.BF16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    def normalize(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Stack (H,W,3) uint8 images into a normalized (B,3,H,W) float32 tensor on the device."""
        batch = torch.from_numpy(np.stack(images)).to(self.torch_device, non_blocking=True)
        return self._table[batch.long()].permute(0, 3, 1, 2).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) normalized float32 -> (B,1,H,W) float32 matte, in this engine's precision."""
        check_sides(x.shape[-2], x.shape[-1])
        x = x.to(self.torch_device)
        if self.precision is Precision.FP16:
            x = x.half()
        with self._lock, torch.inference_mode(), self._autocast():
            matte = self.model(x)
        return matte.float()

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.forward(torch.from_numpy(x)).cpu().numpy()

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        if not images:
            return []
        check_images(images)
        return list(self.forward(self.normalize(images))[:, 0].cpu().numpy())

    def reduced(self) -> TorchEngine | None:
        if self.precision is not Precision.FP32:
            return None
        if self.torch_device.type == "cuda":
            return TorchEngine(copy.deepcopy(self.model), self.torch_device, Precision.FP16)
        if self.torch_device.type == "cpu" and cpu_has_native_bf16():
            return TorchEngine(self.model, self.torch_device, Precision.BF16)
        return None
