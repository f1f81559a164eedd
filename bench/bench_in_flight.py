"""Four images in flight on a CPU: OpenVINO configurations against torch eager and against the engine's
current configuration, measured in one run.

    python bench/bench_in_flight.py [--weights PATH] [--rounds 5] [--threads 2] [--size 512] [--only NAME ...]
    python bench/bench_in_flight.py --profile   # where the latency model's time goes, folded and as traced

Every round runs, in turn, torch eager fp32 on the images one after another (its fastest way on a CPU),
the engine's current latency model on the images one after another, and each candidate; the order of
the three is reversed every other round. The table gives the median milliseconds of each and the median
of the per-round ratios, candidate over eager and candidate over the current model, and the max |Δα| of
the candidate against eager. Run it alone on the machine (`flock /tmp/bench.lock ...`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_engines import FIXTURES, _photo  # noqa: E402

Run = Callable[[list[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class Candidate:
    """An OpenVINO compile configuration and the way the images are sent to it."""

    name: str
    hint: str  # PERFORMANCE_HINT
    threads: int | None = None  # INFERENCE_NUM_THREADS; None: the run's --threads
    streams: int | None = None  # NUM_STREAMS; None: the hint's choice
    requests: int | None = None  # requests in the queue; None: max(2, streams)
    pinning: bool | None = None  # ENABLE_CPU_PINNING; None: the plugin's default
    static: bool = False  # reshape to the input's exact shape before compiling
    batch: bool = False  # all the images as one tensor in one request
    extra: dict[str, Any] = field(default_factory=dict)
    fold: bool = True  # convert the engine's folded graph (False: IBNorm as traced, split and concatenated)


CANDIDATES = (
    Candidate("LATENCY, one request after another", "LATENCY"),
    Candidate("LATENCY, IBNorm as traced, one request after another", "LATENCY", fold=False),
    Candidate("THROUGHPUT, IBNorm as traced, asynchronous queue", "THROUGHPUT", fold=False),
    Candidate("THROUGHPUT, the plugin's streams, asynchronous queue", "THROUGHPUT"),
    Candidate("THROUGHPUT, 1 stream, 4 requests", "THROUGHPUT", streams=1, requests=4),
    Candidate("THROUGHPUT, 2 streams, 4 requests", "THROUGHPUT", streams=2, requests=4),
    Candidate("THROUGHPUT, 4 streams, 4 requests", "THROUGHPUT", streams=4, requests=4),
    Candidate("THROUGHPUT, 2 streams, 1 thread", "THROUGHPUT", threads=1, streams=2, requests=4),
    Candidate("THROUGHPUT, CPU pinning on", "THROUGHPUT", pinning=True),
    Candidate("LATENCY, static shape, one after another", "LATENCY", static=True),
    Candidate("THROUGHPUT, static shape, asynchronous queue", "THROUGHPUT", static=True),
    Candidate("LATENCY, static batch of all, one request", "LATENCY", static=True, batch=True),
    Candidate("LATENCY, dynamic, one request of the batch", "LATENCY", batch=True),
    Candidate("LATENCY, denormals flushed to zero", "LATENCY", extra={"CPU_DENORMALS_OPTIMIZATION": True}),
    Candidate("THROUGHPUT, denormals flushed to zero", "THROUGHPUT", extra={"CPU_DENORMALS_OPTIMIZATION": True}),
)


def _compile(ov: Any, converted: Any, candidate: Candidate, threads: int, shape: list[int]) -> Any:
    model = converted.clone()
    if candidate.static:
        model.reshape({model.inputs[0]: ov.PartialShape(shape)})
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": candidate.hint,
        "INFERENCE_NUM_THREADS": candidate.threads or threads,
        **candidate.extra,
    }
    if candidate.streams is not None:
        config["NUM_STREAMS"] = candidate.streams
    if candidate.pinning is not None:
        config["ENABLE_CPU_PINNING"] = candidate.pinning
    return ov.Core().compile_model(model, "CPU", config)


def _runner(ov: Any, graphs: dict[bool, Any], candidate: Candidate, threads: int, count: int, size: int) -> Run:
    from worker.engines.base import to_network_input

    shape = [count if candidate.batch else 1, 3, size, size]
    compiled = _compile(ov, graphs[candidate.fold], candidate, threads, shape)
    if candidate.batch:
        request = compiled.create_infer_request()

        def batched(images: list[np.ndarray]) -> list[np.ndarray]:
            request.infer({0: to_network_input(images)})
            return list(request.get_output_tensor(0).data[:, 0].copy())

        return batched
    if candidate.hint == "LATENCY":
        single = compiled.create_infer_request()

        def one_by_one(images: list[np.ndarray]) -> list[np.ndarray]:
            mattes = []
            for image in images:
                single.infer({0: to_network_input([image])})
                mattes.append(single.get_output_tensor(0).data[0, 0].copy())
            return mattes

        return one_by_one
    streams = int(compiled.get_property("NUM_STREAMS"))
    queue = ov.AsyncInferQueue(compiled, candidate.requests or max(2, streams))
    mattes: dict[int, np.ndarray] = {}

    def done(request: Any, index: int) -> None:
        mattes[index] = request.get_output_tensor(0).data[0, 0].copy()

    queue.set_callback(done)

    def asynchronous(images: list[np.ndarray]) -> list[np.ndarray]:
        mattes.clear()
        for index, image in enumerate(images):
            queue.start_async({0: to_network_input([image])}, index)
        queue.wait_all()
        return [mattes[index] for index in range(len(images))]

    return asynchronous


def _timed(run: Run, images: list[np.ndarray]) -> float:
    start = time.perf_counter()
    run(images)
    return (time.perf_counter() - start) * 1000


def bench(weights: Path, rounds: int, threads: int, count: int, size: int, only: list[str]) -> None:
    import openvino as ov
    import torch

    from worker.checkpoint import load_modnet
    from worker.engines.openvino_engine import convert, openvino_version
    from worker.engines.torch_engine import TorchEngine

    torch.set_num_threads(threads)
    model = load_modnet(weights)
    eager_engine = TorchEngine(model, torch.device("cpu"))

    def eager(images: list[np.ndarray]) -> list[np.ndarray]:
        return [eager_engine.predict([image])[0] for image in images]

    graphs = {True: convert(model), False: convert(model, fold=False)}
    current = _runner(ov, graphs, CANDIDATES[0], threads, count, size)
    images = [_photo(size, size, seed) for seed in range(count)]
    reference = eager(images)
    print(
        f"torch {torch.__version__}, OpenVINO {openvino_version()}, {threads} threads, {count} images "
        f"of {size}x{size}, {rounds} rounds, weights {weights.name}"
    )
    print(f"\n| candidate ({count} images) | ms | eager ms | vs eager | vs current latency x{count} | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for candidate in CANDIDATES:
        if only and not any(word.lower() in candidate.name.lower() for word in only):
            continue
        run = _runner(ov, graphs, candidate, threads, count, size)
        diff = max(float(np.abs(r - m).max()) for r, m in zip(reference, run(images), strict=True))
        for warm in (eager, current, run):
            warm(images)
        own, base, cur, vs_eager, vs_current = [], [], [], [], []
        for round_number in range(rounds):
            order = (eager, current, run) if round_number % 2 == 0 else (run, current, eager)
            times = {fn: _timed(fn, images) for fn in order}
            own.append(times[run])
            base.append(times[eager])
            cur.append(times[current])
            vs_eager.append(times[run] / times[eager])
            vs_current.append(times[run] / times[current])
        print(
            f"| {candidate.name} | {statistics.median(own):.0f} | {statistics.median(base):.0f} | "
            f"{statistics.median(vs_eager):.2f} | {statistics.median(vs_current):.2f} | {diff:.1e} |",
            flush=True,
        )


def profile(weights: Path, threads: int, size: int, repeats: int = 5) -> None:
    """OpenVINO's own per-node timings (PERF_COUNT) of one image on the latency model, by node kind."""
    import openvino as ov

    from worker.checkpoint import load_modnet
    from worker.engines.base import to_network_input
    from worker.engines.openvino_engine import convert

    model = load_modnet(weights)
    x = to_network_input([_photo(size, size, 0)])
    for fold in (True, False):
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        request = ov.Core().compile_model(convert(model, fold=fold), "CPU", {**config, "PERF_COUNT": True})
        request = request.create_infer_request()
        totals: dict[str, float] = {}
        for _ in range(repeats):
            request.infer({0: x})
            for node in request.profiling_info:
                kind = f"{node.node_type} ({node.exec_type})"
                totals[kind] = totals.get(kind, 0.0) + node.real_time.total_seconds() * 1000 / repeats
        whole = sum(totals.values())
        print(f"\n{'folded' if fold else 'IBNorm as traced'}, {size}x{size}: {whole:.1f} ms of node time per image")
        print("| node kind (kernel) | ms | share |\n|---|---:|---:|")
        for kind, ms in sorted(totals.items(), key=lambda item: -item[1])[:10]:
            print(f"| {kind} | {ms:.1f} | {ms / whole:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=FIXTURES / "random_weights.ckpt")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--only", nargs="*", default=[], help="words of the candidates' names to run")
    parser.add_argument("--profile", action="store_true", help="per-node timings instead of the comparison")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.profile:
        profile(args.weights, args.threads, args.size)
        return
    bench(args.weights, args.rounds, args.threads, args.in_flight, args.size, args.only)


if __name__ == "__main__":
    main()
