"""MODNet kept resident: load once per process, choose its engine, turn uint8 images into mattes.

``ModelRunner`` is the one object the worker, the command line and the benchmarks call; the engine
behind it (``worker/engines/``) is torch, OpenVINO or ONNX Runtime, chosen by ``BACKDROP_ENGINE``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common.settings import Settings
from common.sizing import colab_inference_size, inference_size
from worker.checkpoint import load_modnet
from worker.engines.base import Engine, Precision
from worker.engines.cache import EngineCache, file_sha256
from worker.engines.precision_check import DEFAULT_TOLERANCE
from worker.engines.selection import EngineChoice, ReducedMode, select
from worker.engines.torch_engine import TorchEngine, cpu_has_native_bf16, normalization_table
from worker.modnet import MODNet

__all__ = [
    "ModelRunner",
    "Precision",
    "colab_matte",
    "cpu_has_native_bf16",
    "normalization_table",
    "reduced_mode",
    "resolve_device",
]

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def reduced_mode(settings: Settings) -> ReducedMode:
    """BACKDROP_REDUCED_PRECISION, except that an explicitly set BACKDROP_CPU_BF16 decides on a CPU
    (its older spelling: on and auto force bf16 where the CPU has it, off keeps fp32)."""
    if "cpu_bf16" in settings.model_fields_set and resolve_device(settings.device).type == "cpu":
        return "off" if settings.cpu_bf16 == "off" else "on"
    return settings.reduced_precision


def largest_usual_size(ref_size: int, max_side: int) -> tuple[int, int]:
    """The network input of a 2:3 portrait, the tallest of the usual ID-photo framings."""
    return inference_size(3 * ref_size, 2 * ref_size, ref_size=ref_size, max_side=max_side)


class ModelRunner:
    """One resident MODNet behind one engine. Thread-safe: each engine serializes its own passes."""

    def __init__(
        self,
        model: MODNet,
        device: torch.device,
        precision: Precision = Precision.FP32,
        *,
        engine: Engine | None = None,
        choice: EngineChoice | None = None,
    ) -> None:
        self.engine = engine if engine is not None else TorchEngine(model, device, precision)
        self.model = self.engine.model if isinstance(self.engine, TorchEngine) else model
        self.device = device
        self.choice = choice
        self._table = normalization_table(torch.device("cpu"))

    @property
    def precision(self) -> Precision:
        return self.engine.precision

    @property
    def engine_name(self) -> str:
        return self.engine.name

    def describe(self) -> dict[str, str]:
        """What runs the network and why, for logs and the worker's record."""
        return self.choice.record() if self.choice is not None else self.engine.describe()

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str = "auto",
        *,
        cpu_bf16: str = "off",
        threads: int | None = None,
        engine: str = "torch",
        reduced: ReducedMode | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        check_size: tuple[int, int] = (768, 512),
        cache_dir: str | Path | None = None,
    ) -> ModelRunner:
        """Load a checkpoint and choose its engine (torch, the reference, unless asked) and precision.
        ``reduced`` None follows ``cpu_bf16`` (off: fp32; on or auto: the faster precision where the
        device has one)."""
        if threads is not None:
            torch.set_num_threads(threads)
        dev = resolve_device(device)
        if reduced is None:
            reduced = "off" if cpu_bf16 == "off" else "on"
        model = load_modnet(path, "cpu")
        cache = EngineCache(cache_dir) if cache_dir else None
        choice = select(
            model,
            dev,
            engine=engine,
            reduced=reduced,
            tolerance=tolerance,
            check_size=check_size,
            threads=threads,
            checkpoint_sha256=file_sha256(path) if cache is not None else None,
            cache=cache,
        )
        runner = cls(model, dev, engine=choice.engine, choice=choice)
        log.info("MODNet loaded from %s on %s: %s (%s)", path, dev, choice.engine.version, runner.precision.value)
        return runner

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRunner:
        """The runner the settings describe (model path, device, engine, precision, threads, cache)."""
        return cls.load(
            settings.model_path,
            settings.device,
            threads=settings.torch_threads,
            engine=settings.engine,
            reduced=reduced_mode(settings),
            tolerance=settings.reduced_precision_tolerance,
            check_size=largest_usual_size(settings.inference_ref_size, settings.inference_max_side),
            cache_dir=settings.engine_cache_dir or None,
        )

    def normalize(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Stack (H,W,3) uint8 images into a normalized (B,3,H,W) float32 tensor (on the torch engine's
        device for torch, on the CPU otherwise)."""
        if isinstance(self.engine, TorchEngine):
            return self.engine.normalize(images)
        batch = torch.from_numpy(np.stack(images))
        return self._table[batch.long()].permute(0, 3, 1, 2).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) normalized float32 -> (B,1,H,W) float32 matte, in this runner's engine and precision."""
        if isinstance(self.engine, TorchEngine):
            matte = self.engine.forward(x)
        else:
            matte = torch.from_numpy(self.engine.run(x.detach().cpu().float().numpy()))
        return matte

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Mattes (H,W) float32 in [0,1] for same-shape (H,W,3) uint8 images, H and W multiples of 32.
        One call is one pass as the service counts them (a batch, or concurrent requests on a CPU)."""
        if not images:
            return []
        mattes = self.engine.predict(images)
        if len(mattes) != len(images):
            raise RuntimeError(f"model returned {len(mattes)} mattes for {len(images)} images")
        return mattes

    def warm_up(self, height: int = 512, width: int = 512) -> None:
        """One pass on a blank image so the first real request does not pay for kernel selection."""
        self.predict([np.zeros((height, width, 3), np.uint8)])


def colab_matte(runner: ModelRunner, rgb: np.ndarray, *, ref_size: int = 512) -> np.ndarray:
    """The official colab procedure, operation for operation: normalize at full size, 'area'
    resize to the colab size, matte, 'area' resize back. Returns (H,W) float32."""
    height, width = rgb.shape[:2]
    x = runner.normalize([rgb])
    rh, rw = colab_inference_size(height, width, ref_size=ref_size)
    x = F.interpolate(x, size=(rh, rw), mode="area")
    matte = runner.forward(x)
    matte = F.interpolate(matte.to(x.device), size=(height, width), mode="area")
    return matte[0, 0].cpu().numpy()
