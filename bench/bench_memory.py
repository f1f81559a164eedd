"""Peak memory of one job's post-processing, per megapixel: today's pipeline against the baseline.

    flock /tmp/bench.lock python bench/bench_memory.py [--sizes 1200x1600,4000x3000,7071x7071] [--repeats 2]

Each measurement is its own process: it reads a PNG photo from disk, imports everything and builds the
network's (small) matte, takes its resident size as the baseline, then decodes the photo, brings the matte
to full resolution, composites, cuts out and encodes as a worker does (``prepare`` + ``finish``), and
reports its peak resident size above the baseline. The peak is the kernel's high-water mark of the
process's own memory (``VmHWM``, reset at the baseline through ``/proc/self/clear_refs``): ``ru_maxrss``
would not do, as Linux carries the spawning process's high-water mark into it across ``exec``. The
network is not run: its input is capped in size, so the photo's size only shows in the post-processing.
The baseline implementation is loaded from git (``bench/baseline.py``); runs alternate between the two.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_SIZES = "1200x1600,4000x3000,7071x7071"
CASES = {
    "blue": {"background": "blue"},
    "blur+cutout+matte": {"background": "blur", "outputs": "composite,cutout,matte"},
}


def synthetic_matte(height: int, width: int) -> np.ndarray:
    """A head-and-shoulders matte, soft at its edge and off 0 and 1 as a sigmoid's (float32)."""
    yy = np.arange(height, dtype=np.float32)[:, None]
    xx = np.arange(width, dtype=np.float32)[None, :]
    head = np.hypot((yy - 0.42 * height) / (0.2 * height), (xx - 0.5 * width) / (0.16 * width))
    body = np.hypot((yy - 1.05 * height) / (0.45 * height), (xx - 0.5 * width) / (0.42 * width))
    distance = np.minimum(head, body) - np.float32(1.0)
    distance *= np.float32(max(height, width) / 12)
    np.clip(distance, -30, 30, out=distance)
    return (1 / (1 + np.exp(distance))).astype(np.float32)


def write_photo(path: Path, height: int, width: int) -> None:
    """A smooth synthetic photo as a PNG (small on disk, as the issue's 158 KiB one of 50 Mpx)."""
    from PIL import Image

    photo = np.empty((height, width, 3), np.uint8)
    photo[..., 0] = (90 + 60 * np.arange(width) / width).astype(np.uint8)[None, :]
    photo[..., 1] = (120 + 40 * np.arange(height) / height).astype(np.uint8)[:, None]
    photo[..., 2] = 150
    Image.fromarray(photo).save(path, format="PNG", compress_level=1)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset this process's peak resident size to its current one, and return that (bytes)."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return _status_bytes("VmRSS")


def peak_rss_bytes() -> int:
    """The peak resident size of this process since it started or since ``reset_peak_rss``."""
    return _status_bytes("VmHWM")


def run_child(impl: str, path: Path, case: str, weights: Path | None = None) -> dict[str, float]:
    """In this process: the post-processing of the photo at ``path``, with its peak RSS above the baseline.
    With ``weights`` the matte comes from MODNet (torch eager, CPU) at its capped input size, loaded and
    warmed up at that size before the baseline as a worker is; else from ``synthetic_matte``."""
    import cv2

    from common.imaging import probe_image
    from common.options import JobOptions, OutputKind
    from common.settings import Settings

    if impl == "baseline":
        from bench.baseline import baseline_pipeline

        pipeline = baseline_pipeline()
    else:
        import common.pipeline as pipeline
    settings = Settings()
    data = path.read_bytes()
    info = probe_image(data, max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)
    rh, rw = pipeline.network_input_shape(info.height, info.width, settings)
    small = synthetic_matte(rh, rw)
    runner = None
    if weights is not None:
        from worker.runtime import ModelRunner

        runner = ModelRunner.load(weights, "cpu", engine="torch")
        runner.warm_up(rh, rw)
    options = JobOptions(**CASES[case])
    cv2.setNumThreads(cv2.getNumThreads())  # OpenCV's thread pool starts before the baseline
    cv2.blur(np.zeros((64, 64, 3), np.float32), (3, 3))
    baseline = reset_peak_rss()
    start = time.perf_counter()
    prepared = pipeline.prepare(data, settings)
    if runner is not None:
        (small,) = runner.predict([prepared.network_input])
    result = pipeline.finish(prepared, small, options)
    seconds = time.perf_counter() - start
    peak = peak_rss_bytes() - baseline
    composite = result.outputs.items[OutputKind.COMPOSITE]
    return {
        "peak_bytes": peak,
        "seconds": seconds,
        "pixels": info.width * info.height,
        "composite_size": [composite.width, composite.height],
        "composite_bytes": len(composite.data),
    }


def measure(impl: str, path: Path, case: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", impl, "--photo", str(path), "--case", case],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="WIDTHxHEIGHT,... of the photos")
    parser.add_argument("--cases", default=",".join(CASES), help=f"of {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--impls", default="baseline,current")
    parser.add_argument("--child", choices=["baseline", "current"], help=argparse.SUPPRESS)
    parser.add_argument("--photo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help="child: the matte from MODNet with these weights")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.photo, args.case, args.weights)))
        return

    impls = args.impls.split(",")
    print("| photo | Mpx | case | implementation | peak RSS above baseline, MB | MB per Mpx | seconds |")
    print("|---|---:|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.split("x"))
            path = Path(tmp) / f"{size}.png"
            write_photo(path, height, width)
            for case in args.cases.split(","):
                results: dict[str, list[dict[str, float]]] = {impl: [] for impl in impls}
                for _ in range(args.repeats):
                    for impl in impls:  # alternating: A B A B
                        results[impl].append(measure(impl, path, case))
                for impl in impls:
                    peak = statistics.median(r["peak_bytes"] for r in results[impl]) / 1e6
                    seconds = statistics.median(r["seconds"] for r in results[impl])
                    mpx = results[impl][0]["pixels"] / 1e6
                    print(f"| {size} | {mpx:.1f} | {case} | {impl} | {peak:.0f} | {peak / mpx:.1f} | {seconds:.2f} |")
                if len(impls) == 2:
                    a, b = (statistics.median(r["peak_bytes"] for r in results[i]) for i in impls)
                    print(f"| | | | ratio {impls[0]}/{impls[1]} | {a / b:.1f}x | | |")


if __name__ == "__main__":
    main()
