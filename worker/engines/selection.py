"""Which engine and which precision a worker runs, decided once at start.

``auto`` on a CPU takes the first engine of ``CPU_PREFERENCE`` whose package imports, that builds, and
that reproduces the torch reference within ``CONFORMANCE_TOLERANCE`` on a calibration portrait with the
user's weights (the fastest one that is equal on the conformance fixtures comes first); on CUDA it is
torch. The faster precision is then taken only as the self-check (``precision_check``) allows, unless
an explicit on/off says otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from worker.engines.base import Engine, EngineUnavailable, Precision
from worker.engines.cache import EngineCache
from worker.engines.calibration import calibration_portraits
from worker.engines.precision_check import DEFAULT_TOLERANCE, PrecisionCheck, check_precision
from worker.engines.torch_engine import TorchEngine
from worker.modnet import MODNet

log = logging.getLogger(__name__)

EngineName = Literal["auto", "torch", "openvino", "onnxruntime"]
ReducedMode = Literal["auto", "on", "off"]
ENGINE_NAMES: tuple[str, ...] = ("torch", "openvino", "onnxruntime")
CPU_PREFERENCE: tuple[str, ...] = ("openvino", "onnxruntime", "torch")
CONFORMANCE_TOLERANCE = 1e-3  # max |Δα| against the torch reference
PROBE_SIZE = (256, 192)  # the start-up conformance probe: small, so it costs little


@dataclass
class EngineChoice:
    """The engine a worker runs and why, as logged and recorded in the worker's Redis record."""

    engine: Engine
    reason: str
    precision_check: PrecisionCheck | None = None
    precision_reason: str = ""
    details: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, str]:
        """Flat strings for the worker's Redis hash."""
        fields = {**self.engine.describe(), "engine_reason": self.reason, "precision_reason": self.precision_reason}
        if self.precision_check is not None:
            fields["precision_check_mean"] = f"{self.precision_check.mean:.3e}"
            fields["precision_check_p99"] = f"{self.precision_check.p99:.3e}"
            fields["precision_check_bound"] = f"{self.precision_check.bound:.3e}"
            fields["precision_check_passed"] = str(self.precision_check.passed).lower()
        return {**fields, **self.details}


def build_named(
    name: str,
    model: MODNet,
    device: torch.device,
    *,
    threads: int | None = None,
    checkpoint_sha256: str | None = None,
    cache: EngineCache | None = None,
) -> Engine:
    """One engine by name, fp32. Raises EngineUnavailable when its package or device is missing."""
    if name == "torch":
        return TorchEngine(model, device, Precision.FP32)
    if device.type != "cpu":
        raise EngineUnavailable(f"the {name} engine runs on the CPU only, not {device}")
    if name == "openvino":
        from worker.engines.openvino_engine import OpenVINOEngine

        return OpenVINOEngine.build(model, checkpoint_sha256=checkpoint_sha256, cache=cache, threads=threads)
    if name == "onnxruntime":
        from worker.engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine.build(model, checkpoint_sha256=checkpoint_sha256, cache=cache, threads=threads)
    raise ValueError(f"unknown engine {name!r}; choose one of auto, {', '.join(ENGINE_NAMES)}")


def max_difference(reference: Engine, candidate: Engine, image: np.ndarray) -> float:
    (expected,) = reference.predict([image])
    (actual,) = candidate.predict([image])
    return float(np.abs(expected - actual).max())


def choose_engine(
    model: MODNet,
    device: torch.device,
    engine: str = "auto",
    *,
    threads: int | None = None,
    checkpoint_sha256: str | None = None,
    cache: EngineCache | None = None,
    build: Callable[..., Engine] = build_named,
) -> tuple[Engine, str]:
    """The fp32 engine to run and a sentence saying why."""
    options = {"threads": threads, "checkpoint_sha256": checkpoint_sha256, "cache": cache}
    if engine != "auto":
        chosen = build(engine, model, device, **options)
        return chosen, f"{engine}: asked for"
    if device.type != "cpu":
        return build("torch", model, device, **options), f"auto: torch on {device} (real batches)"
    reference = TorchEngine(model, device, Precision.FP32)
    probe = calibration_portraits(*PROBE_SIZE)[0]
    skipped: list[str] = []
    for name in CPU_PREFERENCE:
        if name == "torch":
            break
        try:
            candidate = build(name, model, device, **options)
        except EngineUnavailable as exc:
            skipped.append(f"{name}: {exc}")
            continue
        difference = max_difference(reference, candidate, probe)
        if difference <= CONFORMANCE_TOLERANCE:
            why = f"auto: {name}, within {difference:.1e} of torch (bound {CONFORMANCE_TOLERANCE:.0e})"
            return candidate, "; ".join([why, *skipped])
        skipped.append(f"{name}: {difference:.1e} from torch, above {CONFORMANCE_TOLERANCE:.0e}")
    return reference, "; ".join(["auto: torch", *skipped])


def choose_precision(
    engine: Engine,
    mode: ReducedMode = "auto",
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    check_size: tuple[int, int] = (672, 512),
) -> tuple[Engine, PrecisionCheck | None, str]:
    """The engine in the precision to run (``engine`` itself or its faster twin), the self-check's
    figures when one ran, and a sentence saying why."""
    if mode == "off":
        return engine, None, "fp32: reduced precision off"
    faster = engine.reduced()
    if faster is None:
        return engine, None, f"fp32: {engine.name} on {engine.device} has no faster precision here"
    if mode == "on":
        return faster, None, f"{faster.precision.value}: reduced precision forced on, not self-checked"
    check = check_precision(engine, faster, calibration_portraits(*check_size), tolerance)
    if check.passed:
        return faster, check, check.summary()
    return engine, check, f"fp32: {check.summary()}"


def select(
    model: MODNet,
    device: torch.device,
    *,
    engine: str = "auto",
    reduced: ReducedMode = "auto",
    tolerance: float = DEFAULT_TOLERANCE,
    check_size: tuple[int, int] = (672, 512),
    threads: int | None = None,
    checkpoint_sha256: str | None = None,
    cache: EngineCache | None = None,
) -> EngineChoice:
    """Engine, then precision; both decisions logged."""
    chosen, reason = choose_engine(
        model, device, engine, threads=threads, checkpoint_sha256=checkpoint_sha256, cache=cache
    )
    log.info("MODNet engine: %s (%s)", chosen.version, reason)
    final, check, precision_reason = choose_precision(chosen, reduced, tolerance=tolerance, check_size=check_size)
    log.info("MODNet precision: %s", precision_reason)
    return EngineChoice(final, reason, check, precision_reason)
