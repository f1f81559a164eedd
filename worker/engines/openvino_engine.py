"""MODNet on OpenVINO's CPU plugin, converted straight from our torch module (no ONNX file).

The precision is always set explicitly: OpenVINO's default on CPUs with bf16 or AMX is bf16, which
does not reproduce the reference. One image runs on a latency-compiled model (all threads on it);
several run as concurrent asynchronous requests on a throughput-compiled one (one stream per core),
never as one larger tensor, which is slower per image on a CPU.

Before conversion each IBNorm is rewritten as one per-channel blend (`FoldedIBNorm`): the same function,
without the channel split and concatenation that OpenVINO's CPU plugin runs in its slow reference
kernels (about a fifth of the network's time at 512x512; the folded graph is ~9 % faster).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worker.engines.base import Engine, EngineUnavailable, Precision, check_images, check_sides, to_network_input
from worker.engines.cache import EngineCache
from worker.modnet import IBNorm, MODNet

log = logging.getLogger(__name__)

FORMAT = "ir2"  # bump when what is stored in the cache changes
_HINTS = {Precision.FP32: "f32", Precision.BF16: "bf16"}
_XML = "modnet.xml"


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise EngineUnavailable("the openvino package is not installed (pip install openvino)") from exc
    return openvino


def openvino_version() -> str:
    return str(_openvino().__version__).split("-")[0]


class FoldedIBNorm(torch.nn.Module):
    """An eval-mode IBNorm as one expression over all channels: ``x * s + t + m * instance_norm(x)``.

    ``m`` is 1 on the instance-normalised channels and 0 on the batch-normalised ones, whose running
    statistics and affine parameters fold into ``s`` and ``t``. The instance statistics are computed for
    every channel (a pattern OpenVINO fuses into one MVN kernel); on the batch-normalised channels the
    mask discards them.
    """

    def __init__(self, norm: IBNorm) -> None:
        super().__init__()
        bn, split = norm.bnorm, norm.bnorm_channels
        channels = split + norm.inorm_channels
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias - bn.running_mean * scale
            mask, s, t = torch.zeros(channels), torch.zeros(channels), torch.zeros(channels)
            mask[split:] = 1.0
            s[:split], t[:split] = scale, shift
        self.register_buffer("mask", mask.view(1, channels, 1, 1))
        self.register_buffer("scale", s.view(1, channels, 1, 1))
        self.register_buffer("shift", t.view(1, channels, 1, 1))
        self.eps = norm.inorm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=(2, 3), keepdim=True)
        variance = (centred * centred).mean(dim=(2, 3), keepdim=True)
        return x * self.scale + self.shift + self.mask * (centred / torch.sqrt(variance + self.eps))


def folded(model: MODNet) -> MODNet:
    """A copy of ``model`` in eval mode with every IBNorm replaced by its `FoldedIBNorm`."""
    copy = deepcopy(model).cpu().eval()
    for parent in list(copy.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, IBNorm):
                setattr(parent, name, FoldedIBNorm(child))
    return copy


def convert(model: MODNet, *, fold: bool = True) -> Any:
    """Our torch MODNet as an OpenVINO model with a dynamic batch and dynamic sides.

    ``fold`` (the default) converts `folded(model)`; False converts the module as it is (benchmarks).
    """
    ov = _openvino()
    source = folded(model) if fold else model.cpu().eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the converter's tracer warns about every Python-side branch
        return ov.convert_model(
            source, example_input=torch.zeros(1, 3, 64, 64), input=[ov.PartialShape([-1, 3, -1, -1])]
        )


def load_or_convert(model: MODNet, checkpoint_sha256: str | None, cache: EngineCache | None) -> Any:
    """The converted model from the cache when a complete entry exists, else converted now (and stored)."""
    ov = _openvino()
    version = f"{openvino_version()}-{FORMAT}"
    if cache is not None and checkpoint_sha256:
        folder = cache.entry("openvino", version, checkpoint_sha256)
        if folder is not None:
            try:
                converted = ov.Core().read_model(str(folder / _XML))
                log.info("OpenVINO model read from the cache %s", folder)
                return converted
            except Exception:  # a damaged entry is rebuilt
                log.warning("unreadable OpenVINO cache entry %s; converting again", folder, exc_info=True)
                cache.discard(folder)
    converted = convert(model)
    if cache is not None and checkpoint_sha256:

        def write(folder: Path) -> None:
            ov.save_model(converted, str(folder / _XML), compress_to_fp16=False)

        cache.store("openvino", version, checkpoint_sha256, write)
    return converted


def cpu_supports_bf16() -> bool:
    """True when OpenVINO's CPU plugin can run bf16 natively here (AVX512-BF16 or AMX)."""
    try:
        capabilities = _openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except EngineUnavailable:
        return False
    return "BF16" in capabilities


class OpenVINOEngine(Engine):
    """A converted MODNet compiled twice for the CPU: latency (one image) and throughput (several)."""

    name = "openvino"

    def __init__(self, converted: Any, precision: Precision = Precision.FP32, threads: int | None = None) -> None:
        ov = _openvino()
        if precision not in _HINTS:
            raise EngineUnavailable(f"OpenVINO on a CPU runs fp32 or bf16, not {precision.value}")
        self.precision = precision
        self.device = "cpu"
        self.threads = threads
        self._converted = converted
        self._core = ov.Core()
        self._latency = self._compile("LATENCY")
        self._throughput = self._compile("THROUGHPUT")
        actual = self._latency.get_property("INFERENCE_PRECISION_HINT")
        if actual != getattr(ov.Type, _HINTS[precision]):
            raise EngineUnavailable(f"OpenVINO compiled {actual} when {_HINTS[precision]} was asked for")
        self.streams = int(self._throughput.get_property("NUM_STREAMS"))
        self._request = self._latency.create_infer_request()
        self._queue = ov.AsyncInferQueue(self._throughput, max(2, self.streams))
        self._lock = threading.Lock()

    def _compile(self, mode: str) -> Any:
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _HINTS[self.precision], "PERFORMANCE_HINT": mode}
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        return self._core.compile_model(self._converted, "CPU", config)

    @classmethod
    def build(
        cls,
        model: MODNet,
        *,
        checkpoint_sha256: str | None = None,
        cache: EngineCache | None = None,
        precision: Precision = Precision.FP32,
        threads: int | None = None,
    ) -> OpenVINOEngine:
        return cls(load_or_convert(model, checkpoint_sha256, cache), precision, threads)

    @property
    def version(self) -> str:
        return f"openvino {openvino_version()}"

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "engine_streams": str(self.streams)}

    def run(self, x: np.ndarray) -> np.ndarray:
        check_sides(x.shape[-2], x.shape[-1])
        with self._lock:
            self._request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
            return self._request.get_output_tensor(0).data.copy()

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        if not images:
            return []
        check_images(images)
        if len(images) == 1:
            return [self.run(to_network_input(images))[0, 0]]
        mattes: list[np.ndarray | None] = [None] * len(images)

        def done(request: Any, index: int) -> None:
            mattes[index] = request.get_output_tensor(0).data[0, 0].copy()

        with self._lock:
            self._queue.set_callback(done)
            for index, image in enumerate(images):
                self._queue.start_async({0: to_network_input([image])}, index)
            self._queue.wait_all()
        if any(matte is None for matte in mattes):
            raise RuntimeError("an OpenVINO request finished without a matte")
        return [m for m in mattes if m is not None]

    def reduced(self) -> OpenVINOEngine | None:
        if self.precision is not Precision.FP32 or not cpu_supports_bf16():
            return None
        return OpenVINOEngine(self._converted, Precision.BF16, self.threads)
