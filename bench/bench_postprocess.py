"""Post-processing time per stage, and the whole photo, today's against the baseline, in one run.

    flock /tmp/bench.lock python bench/bench_postprocess.py [--runs 15] [--threads 2] [--skip-network]

The photo is a 1200x1600 JPEG (the fixture portrait test2.jpg enlarged), its matte a trained-like one:
the alpha of the fixture cut-out test2.cutout.png (a real matte) enlarged, kept off exact 0 and 1 as a
sigmoid's, and shrunk to the network's 672x512 as MODNet would give it. Blue background, JPEG out.
Each stage runs baseline then today's (A B A B, call by call); the ratio is the median of the per-pair
ratios. Then the full pipeline, JPEG in to JPEG out, with the network: the baseline is torch eager fp32
with the baseline post-processing, today's the default CPU engine (``BACKDROP_ENGINE=auto``: OpenVINO
f32) with today's, on the fixture weights (speed does not depend on their values). The baseline
post-processing is loaded from git (``bench/baseline.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FACES = REPO.parent / "shared" / "fixtures" / "faces"
WEIGHTS = REPO.parent / "shared" / "fixtures" / "modnet" / "random_weights.ckpt"
SIZE = (1200, 1600)  # width, height
TRANSPARENT_BELOW = 1e-3  # how far from 0 and 1 a sigmoid's matte stays in flat regions


def photo_and_matte() -> tuple[bytes, np.ndarray, np.ndarray]:
    """The JPEG bytes, the matte at full resolution (H, W) and the matte at the network's size."""
    from PIL import Image

    from common.imaging import encode_image

    photo = np.asarray(Image.open(FACES / "test2.jpg").convert("RGB"))
    alpha = np.asarray(Image.open(FACES / "test2.cutout.png"))[:, :, 3].astype(np.float32) / 255
    photo = cv2.resize(photo, SIZE, interpolation=cv2.INTER_CUBIC)
    alpha = np.clip(cv2.resize(alpha, SIZE, interpolation=cv2.INTER_LINEAR), TRANSPARENT_BELOW, 1 - TRANSPARENT_BELOW)
    small = cv2.resize(alpha, (512, 672), interpolation=cv2.INTER_AREA)
    return encode_image(photo, "jpeg", quality=92), alpha, small


def pairs(a: Callable[[], object], b: Callable[[], object], runs: int) -> tuple[float, float, float]:
    """(median ms of a, of b, median of the per-pair ratios a/b), called A B A B after one warm-up each."""
    a(), b()
    a_ms, b_ms, ratios = [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        a()
        middle = time.perf_counter()
        b()
        end = time.perf_counter()
        a_ms.append((middle - start) * 1000)
        b_ms.append((end - middle) * 1000)
        ratios.append((middle - start) / (end - middle))
    return statistics.median(a_ms), statistics.median(b_ms), statistics.median(ratios)


def row(name: str, result: tuple[float, float, float]) -> None:
    a, b, ratio = result
    print(f"| {name} | {a:.1f} | {b:.1f} | {ratio:.2f}x |")


def bench_stages(runs: int) -> None:
    from bench.baseline import baseline_pipeline
    from common import pipeline
    from common.backgrounds import background_rows, parse_background
    from common.compositing import BackgroundRows
    from common.imaging import encode_image
    from common.options import JobOptions
    from common.settings import Settings

    old = baseline_pipeline()
    settings = Settings()
    data, alpha, small = photo_and_matte()
    options = JobOptions(background="blue")
    spec = options.background_spec()
    decoded = pipeline.decode(data, settings)
    rgb = decoded.rgb
    width, height = SIZE
    image = old.to_float(rgb)
    old_fg = old.estimate_foreground(image, alpha)
    canvas = old.render_background(spec, size=SIZE, original=rgb, alpha=alpha)
    composite = old.composite(old_fg, alpha, canvas)

    def new_rows() -> BackgroundRows:
        return background_rows(parse_background("blue"), size=SIZE, original=rgb, alpha=alpha)

    print(f"\n1200x1600 JPEG, network input 672x512, blue background; median ms of {runs} pairs\n")
    print("| stage | baseline ms | today ms | baseline / today |")
    print("|---|---:|---:|---:|")
    row("decode (same code)", pairs(lambda: old.decode(data, settings), lambda: pipeline.decode(data, settings), runs))
    size = pipeline.network_input_shape(height, width, settings)
    row(
        "network input resize (same code)",
        pairs(lambda: old.network_input(rgb, size), lambda: pipeline.network_input(rgb, size), runs),
    )
    row(
        "matte up to 1200x1600",
        pairs(
            lambda: old.full_resolution_matte(small, decoded),
            lambda: pipeline.full_resolution_matte(small, decoded),
            runs,
        ),
    )
    row(
        "foreground estimation",
        pairs(
            lambda: old.estimate_foreground(old.to_float(rgb), alpha),
            lambda: pipeline.compose(rgb, alpha, background=None),
            runs,
        ),
    )
    row(
        "background + composite",
        pairs(
            lambda: old.composite(old_fg, alpha, old.render_background(spec, size=SIZE, original=rgb, alpha=alpha)),
            lambda: pipeline.compose(rgb, alpha, background=new_rows(), decontaminate=False),
            runs,
        ),
    )
    row(
        "estimation + background + composite",
        pairs(
            lambda: old.composite(
                old.estimate_foreground(old.to_float(rgb), alpha),
                alpha,
                old.render_background(spec, size=SIZE, original=rgb, alpha=alpha),
            ),
            lambda: pipeline.compose(rgb, alpha, background=new_rows()),
            runs,
        ),
    )
    row(
        "JPEG encode, quality 92 (same code)",
        pairs(lambda: encode_image(composite, "jpeg", quality=92), lambda: encode_image(composite, "jpeg"), runs),
    )
    old_prepared, new_prepared = old.prepare(decoded, settings), pipeline.prepare(decoded, settings)
    row(
        "**finish: matte up, outputs, encode**",
        pairs(
            lambda: old.finish(old_prepared, small, options),
            lambda: pipeline.finish(new_prepared, small, options),
            runs,
        ),
    )
    new_composite = pipeline.finish(new_prepared, small, options).outputs
    old_out = old.finish(old_prepared, small, options).outputs
    a = pipeline.decode(old_out.items[next(iter(old_out.items))].data, settings).rgb.astype(np.int16)
    b = pipeline.decode(new_composite.items[next(iter(new_composite.items))].data, settings).rgb.astype(np.int16)
    new_pixels = pipeline.compose(rgb, alpha, background=new_rows()).composite
    assert new_pixels is not None
    print(
        f"\nmax |today - baseline| before encoding: {int(np.abs(new_pixels.astype(np.int16) - composite).max())} "
        f"level(s); after JPEG encoding and decoding: {int(np.abs(a - b).max())}"
    )


def bench_pipeline(runs: int, threads: int) -> None:
    from bench.baseline import baseline_pipeline
    from common import pipeline
    from common.options import JobOptions
    from common.settings import Settings
    from worker.runtime import ModelRunner

    old = baseline_pipeline()
    settings = Settings()
    data, _, _ = photo_and_matte()
    options = JobOptions(background="blue")
    eager = ModelRunner.load(WEIGHTS, "cpu", engine="torch", threads=threads)
    start = time.perf_counter()
    default = ModelRunner.load(WEIGHTS, "cpu", engine="auto", threads=threads)
    print(
        f"\ndefault CPU engine: {default.engine.version} ({default.precision.value}), built in "
        f"{time.perf_counter() - start:.1f} s"
    )

    def baseline_photo() -> bytes:
        prepared = old.prepare(data, settings)
        (matte,) = eager.predict([prepared.network_input])
        return next(iter(old.finish(prepared, matte, options).outputs.items.values())).data

    def today_photo() -> bytes:
        prepared = pipeline.prepare(data, settings)
        (matte,) = default.predict([prepared.network_input])
        return next(iter(pipeline.finish(prepared, matte, options).outputs.items.values())).data

    print(f"\nFull pipeline, 1200x1600 JPEG -> blue JPEG, {threads} threads, median ms of {runs} pairs\n")
    print("| pipeline | baseline ms | today ms | baseline / today |")
    print("|---|---:|---:|---:|")
    row(
        "JPEG in -> JPEG out (torch eager + baseline post-processing vs default engine + today's)",
        pairs(baseline_photo, today_photo, runs),
    )

    def network(runner: ModelRunner) -> Callable[[], object]:
        x = pipeline.prepare(data, settings).network_input
        return lambda: runner.predict([x])

    row("network alone (torch eager vs default engine)", pairs(network(eager), network(default), runs))
    bench_overlap(today_photo, runs)


def bench_overlap(photo: Callable[[], bytes], runs: int) -> None:
    """Per-image time of photos one after another against two at a time in two threads, as a CPU worker
    runs them (``--pool threads``, concurrency 2): one photo's post-processing then runs beside the other's
    network pass on the same cores."""
    from concurrent.futures import ThreadPoolExecutor

    count = 4
    pool = ThreadPoolExecutor(2)

    def one_by_one() -> None:
        for _ in range(count):
            photo()

    def two_at_a_time() -> None:
        list(pool.map(lambda _: photo(), range(count)))

    serial, overlapped, ratio = pairs(one_by_one, two_at_a_time, max(3, runs // 3))
    pool.shutdown()
    print(f"\n{count} photos with the default engine and today's post-processing, per photo:\n")
    print("| one after another ms | two at a time in two threads ms | one after another / two at a time |")
    print("|---:|---:|---:|")
    print(f"| {serial / count:.1f} | {overlapped / count:.1f} | {ratio:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-network", action="store_true", help="post-processing stages only")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    bench_stages(args.runs)
    if not args.skip_network:
        bench_pipeline(args.runs, args.threads)


if __name__ == "__main__":
    main()
