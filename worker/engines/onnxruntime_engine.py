"""MODNet on ONNX Runtime's CPU provider, exported from our torch module with ``torch.onnx``.

The export needs the ``onnx`` package. ONNX Runtime has no bf16 kernels for these layers on x86, so
this engine offers no reduced precision. Images run one at a time (a larger tensor is slower per
image on a CPU).
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worker.engines.base import Engine, EngineUnavailable, Precision, check_images, check_sides, to_network_input
from worker.engines.cache import EngineCache
from worker.modnet import MODNet

log = logging.getLogger(__name__)

FORMAT = "onnx1"  # bump when what is stored in the cache changes
OPSET = 17
_FILE = "modnet.onnx"


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineUnavailable("the onnxruntime package is not installed (pip install onnxruntime)") from exc
    return onnxruntime


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401  (torch.onnx.export writes through it)
    except ImportError as exc:
        raise EngineUnavailable("exporting for ONNX Runtime needs the onnx package (pip install onnx)") from exc


def export(model: MODNet) -> bytes:
    """Our torch MODNet as an ONNX graph with a dynamic batch and dynamic sides."""
    _require_onnx()
    buffer = io.BytesIO()
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's warnings about Python-side branches
        torch.onnx.export(
            model.cpu().eval(),
            (torch.zeros(1, 3, 64, 64),),
            buffer,
            dynamo=False,
            input_names=["input"],
            output_names=["matte"],
            dynamic_axes={"input": dynamic, "matte": dynamic},
            opset_version=OPSET,
        )
    return buffer.getvalue()


def load_or_export(model: MODNet, checkpoint_sha256: str | None, cache: EngineCache | None) -> bytes:
    """The ONNX graph from the cache when a complete entry exists, else exported now (and stored)."""
    version = f"{_onnxruntime().__version__}-torch{torch.__version__}-{FORMAT}"
    if cache is not None and checkpoint_sha256:
        folder = cache.entry("onnxruntime", version, checkpoint_sha256)
        if folder is not None:
            try:
                return (folder / _FILE).read_bytes()
            except OSError:
                cache.discard(folder)
    graph = export(model)
    if cache is not None and checkpoint_sha256:

        def write(folder: Path) -> None:
            (folder / _FILE).write_bytes(graph)

        cache.store("onnxruntime", version, checkpoint_sha256, write)
    return graph


class OnnxRuntimeEngine(Engine):
    """One inference session, all graph optimizations on."""

    name = "onnxruntime"

    def __init__(self, graph: bytes, threads: int | None = None) -> None:
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
        self.device = "cpu"
        self.precision = Precision.FP32
        self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._lock = threading.Lock()

    @classmethod
    def build(
        cls,
        model: MODNet,
        *,
        checkpoint_sha256: str | None = None,
        cache: EngineCache | None = None,
        precision: Precision = Precision.FP32,
        threads: int | None = None,
    ) -> OnnxRuntimeEngine:
        if precision is not Precision.FP32:
            raise EngineUnavailable(f"the ONNX Runtime engine runs fp32 only, not {precision.value}")
        return cls(load_or_export(model, checkpoint_sha256, cache), threads)

    @property
    def version(self) -> str:
        return f"onnxruntime {_onnxruntime().__version__}"

    def run(self, x: np.ndarray) -> np.ndarray:
        check_sides(x.shape[-2], x.shape[-1])
        with self._lock:
            (matte,) = self._session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})
        return matte

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        if not images:
            return []
        check_images(images)
        return [self.run(to_network_input([image]))[0, 0] for image in images]
