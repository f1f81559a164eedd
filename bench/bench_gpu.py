"""GPU benchmark: MODNet img/s by batch size in fp32 and the reduced precision (fp16 on CUDA), with CUDA
graphs on CUDA, and the full pipeline's img/s on JPEGs, the GPU pipeline against the CPU path.

    python bench/bench_gpu.py [--device cuda] [--weights PATH] [--rounds 5]
    python bench/bench_gpu.py --device cpu --quick      # small sizes: exercises every step on a CPU

Every configuration is timed once per round, the rounds interleave them (so a slower stretch of a shared
machine touches them all alike) and the median round counts; ratios are against batch 1 fp32 (network)
and the CPU path (pipeline), measured in the same run. The reduced precision's figures are its speed:
a worker runs it only where the self-check passes on its weights (the verdict on these weights is
printed). Photos: ``examples/portrait.jpg`` scaled to 1200x1600 (quick: 300x400), encoded at quality 90.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench.bench_core import _default_weights  # noqa: E402


@dataclass(frozen=True)
class Plan:
    network_size: tuple[int, int]
    batch_sizes: tuple[int, ...]
    passes: int  # forward passes per timing
    photo_size: tuple[int, int]  # (height, width)
    photos: int  # per pipeline timing
    pipeline_batch: int  # photos post-processed as one batch on the device
    ref_size: int


FULL = Plan((512, 512), (1, 2, 4, 8, 16, 32, 64), 20, (1600, 1200), 64, 16, 512)
QUICK = Plan((64, 64), (1, 2, 4), 2, (400, 300), 2, 2, 64)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(run: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start


def interleaved(cases: dict[str, Callable[[], object]], rounds: int, device: torch.device) -> dict[str, float]:
    """Median seconds of each case, one timing of every case per round after one warm-up of each."""
    for run in cases.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            times[name].append(seconds(run, device))
    return {name: statistics.median(values) for name, values in times.items()}


def jpegs(plan: Plan) -> list[bytes]:
    height, width = plan.photo_size
    portrait = Image.open(REPO / "examples" / "portrait.jpg").convert("RGB").resize((width, height), Image.BICUBIC)
    rng = np.random.default_rng(0)
    photos = []
    for _ in range(plan.photos):
        # A little noise of its own per photo, so no two files are the same.
        noisy = np.clip(np.asarray(portrait, np.int16) + rng.integers(-2, 3, (height, width, 3)), 0, 255)
        buffer = io.BytesIO()
        Image.fromarray(noisy.astype(np.uint8)).save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
    return photos


def network_cases(engines: dict[str, object], plan: Plan, device: torch.device) -> dict[str, Callable[[], object]]:
    from worker.cuda_graphs import GraphedForward

    height, width = plan.network_size
    cases: dict[str, Callable[[], object]] = {}
    for label, engine in engines.items():
        forwards = {label: engine.forward}
        if device.type == "cuda":
            graphed = GraphedForward(engine, [plan.network_size], max(plan.batch_sizes))
            graphed.capture_all()
            forwards[f"{label} + CUDA graphs"] = graphed
        for name, forward in forwards.items():
            for batch in plan.batch_sizes:
                x = torch.randn(batch, 3, height, width, device=device)

                def run(forward: Callable[[torch.Tensor], torch.Tensor] = forward, x: torch.Tensor = x) -> None:
                    for _ in range(plan.passes):
                        forward(x)

                cases[f"{name}|{batch}"] = run
    return cases


def pipeline_cases(
    engine: object, plan: Plan, device: torch.device, photos: list[bytes], pool: ThreadPoolExecutor
) -> dict[str, Callable[[], object]]:
    """Both paths as a worker runs them: photos decoded and encoded by ``pool``'s threads (a worker's
    jobs), the GPU pipeline's network and post-processing in batches on the device in one thread."""
    from common.options import JobOptions
    from common.pipeline import replace_photo
    from common.settings import Settings
    from worker.device_pipeline import DevicePipeline, RenderedPhoto
    from worker.runtime import ModelRunner

    settings = Settings(
        model_path=Path("unused.ckpt"), inference_ref_size=plan.ref_size, max_batch_size=plan.pipeline_batch
    )
    options = JobOptions(background="blue")
    runner = ModelRunner(engine.model, device, engine=engine)
    pipeline = DevicePipeline(engine, settings)

    def cpu_path() -> None:
        # The CPU path's post-processing with this device's network: what a worker without the GPU pipeline does.
        list(pool.map(lambda data: replace_photo(data, options, runner.predict, settings), photos))

    def on_device() -> None:
        for start in range(0, len(photos), plan.pipeline_batch):
            prepared = list(pool.map(pipeline.prepare, photos[start : start + plan.pipeline_batch]))
            mattes = pipeline.predict([photo.network_input for photo in prepared])
            list(pool.map(RenderedPhoto.encode, pipeline.render_batch(prepared, mattes, options)))

    return {"CPU path (numpy post-processing)": cpu_path, f"GPU pipeline (batches of {plan.pipeline_batch})": on_device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--weights", type=Path, default=None, help="default: the fixture's, or random ones")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes and counts, to exercise every step")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="threads decoding and encoding photos (a worker's jobs)"
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    rounds = 2 if args.quick else args.rounds
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from worker.checkpoint import load_modnet
    from worker.engines.calibration import calibration_portraits
    from worker.engines.precision_check import check_precision
    from worker.engines.torch_engine import TorchEngine

    weights = args.weights or _default_weights()
    fp32 = TorchEngine(load_modnet(weights, "cpu"), device)
    engines: dict[str, object] = {"fp32": fp32}
    faster = fp32.reduced()
    name = "cuda" if device.type == "cuda" else "cpu"
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({gpu}), torch {torch.__version__}")
    print(
        f"weights {weights.name}; rounds {rounds}, median round; network {plan.network_size[0]}x{plan.network_size[1]}"
    )
    if faster is None:
        print(f"reduced precision: none on this {name}")
    else:
        engines[faster.precision.value] = faster
        check = check_precision(fp32, faster, calibration_portraits(*plan.network_size))
        print(f"reduced precision {faster.precision.value}, self-check on these weights: {check.summary()}")

    times = interleaved(network_cases(engines, plan, device), rounds, device)
    baseline = plan.passes * 1 / times["fp32|1"]
    print("\nnetwork img/s by batch size (ratio: per-image throughput against fp32 at batch 1)")
    for case, elapsed in times.items():
        label, batch = case.split("|")
        rate = plan.passes * int(batch) / elapsed
        print(f"  {label:<22} batch {int(batch):>3}: {rate:10.1f} img/s  x{rate / baseline:.2f}")

    from worker.device_images import DeviceCodec

    photos = jpegs(plan)
    height, width = plan.photo_size
    print(
        f"\nfull pipeline, {len(photos)} JPEGs of {width}x{height} -> blue JPEG, network {fp32.precision.value}, "
        f"{args.jobs} threads decoding and encoding"
    )
    print(f"  JPEG codec on the device: {DeviceCodec(device).describe()}")
    with ThreadPoolExecutor(args.jobs) as pool:
        times = interleaved(pipeline_cases(fp32, plan, device, photos, pool), rounds, device)
    base = len(photos) / times["CPU path (numpy post-processing)"]
    for case, elapsed in times.items():
        rate = len(photos) / elapsed
        print(f"  {case:<34}: {rate:8.2f} img/s  x{rate / base:.2f}")


if __name__ == "__main__":
    main()
