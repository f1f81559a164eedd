"""MODNet replayed from CUDA graphs: one graph per (batch size, network input shape), captured the first
time that shape runs, for the shape buckets only.

A graph replays a whole forward pass as one launch, which removes the per-kernel launch cost that
dominates small batches on a fast GPU. It needs fixed shapes, so a batch is padded up to the next
captured batch size (powers of two up to the largest batch) and only the shape buckets of
``common/sizing.py`` are captured (a bounded set; photos outside every bucket run eagerly). Chosen over
``torch.compile(mode="reduce-overhead")``: the same graphs without a compiler's minutes of start-up per
shape. CUDA only; elsewhere every pass runs eagerly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from worker.engines.base import Precision
from worker.engines.torch_engine import TorchEngine

log = logging.getLogger(__name__)

WARM_UP_PASSES = 3  # on a side stream before capture, so lazy initialisation stays out of the graph
MAX_GRAPHS = 64  # a bound on the memory graphs hold, whatever shapes arrive


def graph_batch_sizes(max_batch_size: int) -> tuple[int, ...]:
    """Powers of two up to ``max_batch_size``, and ``max_batch_size`` itself."""
    sizes = {1 << k for k in range(max_batch_size.bit_length()) if 1 << k <= max_batch_size}
    return tuple(sorted(sizes | {max_batch_size}))


def padded_batch(count: int, sizes: Iterable[int]) -> int | None:
    """The smallest of ``sizes`` that holds ``count`` images, None when none does."""
    fitting = [size for size in sizes if size >= count]
    return min(fitting) if fitting else None


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: torch.Tensor  # the static (B, 3, H, W) input the graph reads
    outputs: torch.Tensor  # the static (B, 1, H, W) matte it writes


class GraphedForward:
    """``forward(x)`` of a torch engine, replayed from CUDA graphs for the bucket shapes."""

    def __init__(self, engine: TorchEngine, shapes: Iterable[tuple[int, int]], max_batch_size: int) -> None:
        self.engine = engine
        self.enabled = engine.torch_device.type == "cuda"
        self.shapes = frozenset(shapes)
        self.batch_sizes = graph_batch_sizes(max_batch_size)
        self._graphs: dict[tuple[int, int, int], _Graph] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.enabled else None
        self._lock = threading.Lock()

    def graph_key(self, x: torch.Tensor) -> tuple[int, int, int] | None:
        """(padded batch, H, W) of the graph that runs ``x``, or None when ``x`` runs eagerly."""
        if not self.enabled or tuple(x.shape[-2:]) not in self.shapes:
            return None
        batch = padded_batch(x.shape[0], self.batch_sizes)
        if batch is None:
            return None
        key = (batch, int(x.shape[-2]), int(x.shape[-1]))
        return key if key in self._graphs or len(self._graphs) < MAX_GRAPHS else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalized float32 on the device -> (B, 1, H, W) float32 matte."""
        key = self.graph_key(x)
        if key is None:
            return self.engine.forward(x)
        with self._lock:
            graph = self._graphs.get(key) or self._capture(key)
            count = x.shape[0]
            graph.inputs[:count].copy_(x)
            graph.inputs[count:].zero_()
            graph.graph.replay()
            return graph.outputs[:count].float().clone()

    def _capture(self, key: tuple[int, int, int]) -> _Graph:
        batch, height, width = key
        dtype = torch.float16 if self.engine.precision is Precision.FP16 else torch.float32
        model = self.engine.model
        inputs = torch.zeros((batch, 3, height, width), device=self.engine.torch_device, dtype=dtype)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(WARM_UP_PASSES):
                model(inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph, pool=self._pool):
            outputs = model(inputs)
        captured = _Graph(graph, inputs, outputs)
        self._graphs[key] = captured
        log.info("captured a CUDA graph of MODNet for %d x %dx%d (%s)", batch, height, width, dtype)
        return captured
