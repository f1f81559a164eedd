"""CPU benchmark of the engines against our torch eager fp32, measured in one run.

    python bench/bench_engines.py [--weights PATH] [--runs 5] [--threads 2] [--skip-buckets]

Every figure is a ratio to our torch eager measured right before it (A B A B, call by call), so a busy
neighbour slows both sides alike. Prints, per network input size: time per image at one image and at
``--in-flight`` images per call (eager: one after another, as it is fastest that way on a CPU), and the
max |Δα| against eager fp32. Then the shape-bucket measurement: the matte change of resizing or padding
a photo into its bucket, against the matte at the photo's own aspect ratio, on the fixture photos.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from worker.engines.base import Engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIXTURES = REPO.parent / "shared" / "fixtures" / "modnet"
SIZES = ((512, 512), (512, 384))  # network inputs, (height, width)


def _photo(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _one_by_one(engine: Engine, images: list[np.ndarray]) -> list[np.ndarray]:
    return [engine.predict([image])[0] for image in images]


def _pairs(eager: Callable[[], object], other: Callable[[], object], runs: int) -> tuple[float, float, float]:
    """(median eager ms, median other ms, median of the per-pair ratios other/eager), A B A B."""
    eager(), other()
    a_times, b_times, ratios = [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        eager()
        a = time.perf_counter() - start
        start = time.perf_counter()
        other()
        b = time.perf_counter() - start
        a_times.append(a * 1000)
        b_times.append(b * 1000)
        ratios.append(b / a)
    return statistics.median(a_times), statistics.median(b_times), statistics.median(ratios)


def bench_engines(weights: Path, runs: int, threads: int, in_flight: int) -> None:
    import torch

    from worker.checkpoint import load_modnet
    from worker.engines.base import EngineUnavailable
    from worker.engines.selection import build_named
    from worker.engines.torch_engine import TorchEngine

    torch.set_num_threads(threads)
    model = load_modnet(weights)
    eager = TorchEngine(model, torch.device("cpu"))
    engines = {}
    for name in ("openvino", "onnxruntime"):
        start = time.perf_counter()
        try:
            engines[f"{name} fp32"] = build_named(name, model, torch.device("cpu"), threads=threads)
        except EngineUnavailable as exc:
            print(f"{name}: unavailable ({exc})")
            continue
        print(f"{name}: built in {time.perf_counter() - start:.1f} s (no cache)")
    faster = engines["openvino fp32"].reduced() if "openvino fp32" in engines else None
    if faster is not None:
        engines["openvino bf16"] = faster
    print(
        "\n| engine | input | eager ms | engine ms | time vs eager, 1 image | per image at "
        f"{in_flight} in flight | max abs matte diff |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for height, width in SIZES:
        one = [_photo(height, width, 0)]
        many = [_photo(height, width, seed) for seed in range(in_flight)]
        reference = eager.predict(many)
        for name, engine in engines.items():
            a_ms, b_ms, single = _pairs(partial(eager.predict, one), partial(engine.predict, one), runs)
            _, _, batch = _pairs(partial(_one_by_one, eager, many), partial(engine.predict, many), max(2, runs // 2))
            diff = max(float(np.abs(r - m).max()) for r, m in zip(reference, engine.predict(many), strict=True))
            print(f"| {name} | {height}x{width} | {a_ms:.0f} | {b_ms:.0f} | {single:.2f} | {batch:.2f} | {diff:.1e} |")
        a_ms, b_ms, ratio = _pairs(partial(_one_by_one, eager, many), partial(eager.predict, many), 2)
        print(
            f"| torch eager, one batch of {in_flight} vs {in_flight} singles | {height}x{width} | "
            f"{a_ms:.0f} | {b_ms:.0f} | | {ratio:.2f} | |"
        )


def bench_buckets(weights: Path, threads: int) -> None:
    """Matte change of fitting a photo into its bucket, against the photo's own aspect ratio."""
    import cv2
    import torch

    from common.pipeline import network_input
    from common.sizing import inference_size
    from worker.checkpoint import load_modnet
    from worker.engines.selection import build_named

    torch.set_num_threads(threads)
    engine = build_named("openvino", load_modnet(weights), torch.device("cpu"), threads=threads)
    with np.load(FIXTURES / "pipeline_vectors.npz") as data:
        photos = [data[f"{case}__image_uint8"] for case in data["case_names"]]

    def full(matte: np.ndarray, height: int, width: int) -> np.ndarray:
        return np.clip(cv2.resize(matte, (width, height), interpolation=cv2.INTER_LINEAR), 0, 1)

    def crop(image: np.ndarray, aspect: float) -> np.ndarray:
        height, width = image.shape[:2]
        if height / width > aspect:
            new = round(width * aspect)
            return image[(height - new) // 2 : (height - new) // 2 + new]
        new = round(height / aspect)
        return image[:, (width - new) // 2 : (width - new) // 2 + new]

    def padded(image: np.ndarray, bh: int, bw: int) -> np.ndarray:
        height, width = image.shape[:2]
        scale = min(bh / height, bw / width)
        nh, nw = round(height * scale), round(width * scale)
        top, left = (bh - nh) // 2, (bw - nw) // 2
        x = cv2.copyMakeBorder(
            network_input(image, (nh, nw)), top, bh - nh - top, left, bw - nw - left, cv2.BORDER_REPLICATE
        )
        return full(engine.predict([x])[0][top : top + nh, left : left + nw], height, width)

    print("\n| aspect change into the bucket | resize: mean abs diff (worst photo) | pad: mean abs diff (worst) |")
    print("|---:|---:|---:|")
    for change in (0.03, 0.06, 0.12):
        resized, pads = [], []
        for photo in photos:
            for ratio in (4 / 3, 3 / 2):
                image = crop(photo, ratio * (1 + change))
                height, width = image.shape[:2]
                exact = full(engine.predict([network_input(image, inference_size(height, width))])[0], height, width)
                bucket = (round(512 * ratio / 32) * 32, 512)
                fitted = full(engine.predict([network_input(image, bucket)])[0], height, width)
                resized.append(float(np.abs(fitted - exact).mean()))
                pads.append(float(np.abs(padded(image, *bucket) - exact).mean()))
        print(f"| {change:.0%} | {np.mean(resized):.4f} ({max(resized):.4f}) | {np.mean(pads):.4f} ({max(pads):.4f}) |")
    rng = np.random.default_rng(0)
    floor = []
    for photo in photos:
        height, width = photo.shape[:2]
        size = inference_size(height, width)
        exact = full(engine.predict([network_input(photo, size)])[0], height, width)
        noisy = np.clip(photo.astype(np.int16) + rng.integers(-1, 2, photo.shape), 0, 255).astype(np.uint8)
        floor.append(float(np.abs(full(engine.predict([network_input(noisy, size)])[0], height, width) - exact).mean()))
    print(f"\nNoise floor: ±1 grey level of noise on the photo moves the matte by {np.mean(floor):.4f} mean abs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=FIXTURES / "random_weights.ckpt")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--skip-buckets", action="store_true")
    args = parser.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    bench_engines(args.weights, args.runs, args.threads, args.in_flight)
    if not args.skip_buckets:
        bench_buckets(args.weights, args.threads)


if __name__ == "__main__":
    main()
