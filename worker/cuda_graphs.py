"""MODNet replayed from CUDA graphs: one graph per (batch size, network input shape) of the shape buckets,
all captured at worker start.

A graph replays a whole forward pass as one launch, which removes the per-kernel launch cost that
dominates small batches on a fast GPU. It needs fixed shapes, so a batch is padded up to the next
captured batch size (powers of two up to the largest batch) and only the shape buckets of
``common/sizing.py`` are captured (a bounded set; photos outside every bucket run eagerly). Chosen over
``torch.compile(mode="reduce-overhead")``: the same graphs without a compiler's minutes of start-up per
shape. They are captured before the worker takes jobs, because a capture must not meet other threads'
work on the GPU (the jobs' post-processing); later passes only replay them. CUDA only; elsewhere every
pass runs eagerly.
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
MAX_GRAPHS = 64  # a bound on the graphs (and the memory they hold) whatever the settings


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
        """(padded batch, H, W) of the captured graph that runs ``x``, or None when ``x`` runs eagerly."""
        batch = padded_batch(x.shape[0], self.batch_sizes)
        key = None if batch is None else (batch, int(x.shape[-2]), int(x.shape[-1]))
        return key if key in self._graphs else None

    def capture_all(self) -> int:
        """Capture every (batch size, bucket shape) graph, up to MAX_GRAPHS; the number captured. To be
        called before any other work uses the GPU (worker start)."""
        if not self.enabled:
            return 0
        for height, width in sorted(self.shapes):
            for batch in self.batch_sizes:
                if len(self._graphs) >= MAX_GRAPHS:
                    log.warning("CUDA graphs: %d captured, the rest of the shapes run eagerly", MAX_GRAPHS)
                    return len(self._graphs)
                self._capture((batch, height, width))
        return len(self._graphs)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalized float32 on the device -> (B, 1, H, W) float32 matte."""
        key = self.graph_key(x)
        if key is None:
            return self.engine.forward(x)
        with self._lock, torch.inference_mode():
            graph = self._graphs[key]
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
        log.debug("captured a CUDA graph of MODNet for %d x %dx%d (%s)", batch, height, width, dtype)
        return captured
