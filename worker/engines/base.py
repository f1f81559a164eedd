"""The interface every way of running MODNet implements, and the numpy steps they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from enum import StrEnum

import numpy as np

MULTIPLE = 32  # MODNet's encoder downsamples five times


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"  # CUDA: weights and activations in half precision
    BF16 = "bf16"  # CPU: bf16 on CPUs with native bf16 instructions


class EngineUnavailable(RuntimeError):
    """The engine's package is not installed, or it cannot run on this device."""


def normalization_lut() -> np.ndarray:
    """uint8 -> [-1, 1] exactly as the official preprocessing computes it in float32: true division
    by 255, then (x - 0.5) / 0.5 (torchvision ToTensor + Normalize). 256 float32 entries."""
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    return ((levels - np.float32(0.5)) / np.float32(0.5)).astype(np.float32)


_LUT = normalization_lut()


def check_images(images: Sequence[np.ndarray]) -> tuple[int, int]:
    """The common (H, W) of a batch of (H, W, 3) uint8 images; both sides multiples of 32."""
    shapes = {img.shape for img in images}
    if len(shapes) != 1:
        raise ValueError(f"a batch must hold images of one shape, got {sorted(shapes)}")
    (shape,) = shapes
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"images must be (H, W, 3), got {shape}")
    check_sides(shape[0], shape[1])
    return shape[0], shape[1]


def check_sides(height: int, width: int) -> None:
    if height % MULTIPLE or width % MULTIPLE or height < MULTIPLE or width < MULTIPLE:
        raise ValueError(f"MODNet needs sides that are multiples of 32, got {(height, width)}")


def to_network_input(images: Sequence[np.ndarray]) -> np.ndarray:
    """(B, 3, H, W) float32 network input from same-shape (H, W, 3) uint8 images."""
    batch = _LUT[np.stack(images)]
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


class Engine(ABC):
    """MODNet compiled for one device and one precision. ``run`` is the model; ``predict`` the images."""

    name: str = "engine"
    device: str = "cpu"
    precision: Precision = Precision.FP32

    @abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) normalized float32 -> (B, 1, H, W) float32 matte."""

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Mattes (H, W) float32 for same-shape (H, W, 3) uint8 images, H and W multiples of 32.
        The default runs the images as one batch; CPU engines override it to run them concurrently."""
        if not images:
            return []
        check_images(images)
        return list(self.run(to_network_input(images))[:, 0])

    def reduced(self) -> Engine | None:
        """The same model in this device's faster precision (bf16 on CPUs with native bf16, fp16 on
        CUDA), sharing what it can with this one; None when the device or engine has none."""
        return None

    @property
    def version(self) -> str:
        """The engine's package and version, as recorded in logs and the worker's record."""
        return self.name

    def describe(self) -> dict[str, str]:
        return {"engine": self.name, "engine_version": self.version, "precision": self.precision.value}
