"""CPU benchmark of the core: the tutorial's way against our default path, measured in one run.

    python bench/bench_core.py [--weights PATH] [--repeats 7] [--threads 2]

Each configuration runs in its own process so that its peak RSS is its own. Prints milliseconds per
image (median and min), peak RSS, the ratio tutorial/ours, the matte difference of the variants that
change numerics, and a full-pipeline figure for a 1200x1600 JPEG.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIXTURE_WEIGHTS = REPO.parent / "shared" / "fixtures" / "modnet" / "random_weights.ckpt"
SIZES = {"512x512": (512, 512), "512x384": (512, 384)}  # (height, width) of the photo
MODES = ("tutorial", "ours", "ours_channels_last", "ours_bf16")


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth synthetic photo (gradients and a disc): content does not change the speed of a CNN."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = ((yy - height * 0.45) ** 2 + (xx - width * 0.5) ** 2) < (min(height, width) * 0.3) ** 2
    rgb = np.stack([xx / width * 255, yy / height * 255, np.where(disc, 200.0, 40.0)], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 8, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


def _timed(fn, repeats: int) -> tuple[float, float]:
    fn()
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), min(samples)


def run_model_case(mode: str, size: str, weights: Path, repeats: int, threads: int) -> dict[str, object]:
    """One configuration in this process; returns its figures."""
    import cv2
    import torch

    from worker.checkpoint import load_modnet
    from worker.runtime import ModelRunner, Precision

    torch.set_num_threads(threads)
    height, width = SIZES[size]
    photo = _photo(height, width)
    model = load_modnet(weights)

    if mode == "tutorial":
        # The tutorial: squash to 512x512, fp32 eager, autograd left on, one image at a time,
        # matte scaled back to the photo size.
        model.requires_grad_(True)

        def step() -> np.ndarray:
            squashed = cv2.resize(photo, (512, 512), interpolation=cv2.INTER_AREA)
            x = torch.from_numpy(squashed).permute(2, 0, 1)[None].float() / 255
            x = (x - 0.5) / 0.5
            matte = model(x)[0, 0].detach().numpy()
            return cv2.resize(matte, (width, height), interpolation=cv2.INTER_AREA)

    else:
        precision = Precision.BF16 if mode == "ours_bf16" else Precision.FP32
        runner = ModelRunner(model, torch.device("cpu"), precision)
        if mode == "ours_channels_last":
            runner.model.to(memory_format=torch.channels_last)
        rh, rw = height, width  # both sizes are already multiples of 32 at the 512 reference

        def step() -> np.ndarray:
            return runner.predict([photo[:rh, :rw]])[0]

    median, best = _timed(step, repeats)
    matte = step()
    return {
        "mode": mode,
        "size": size,
        "ms_median": round(median, 1),
        "ms_min": round(best, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "matte": matte.tolist() if mode.startswith("ours") else None,
    }


def run_pipeline_case(weights: Path, repeats: int, threads: int) -> dict[str, object]:
    """decode -> matte -> composite -> encode for a 1200x1600 JPEG, with the stages timed apart."""
    import torch
    from PIL import Image

    from common.options import JobOptions
    from common.pipeline import decode, finish, prepare, render_outputs
    from common.settings import Settings
    from worker.runtime import ModelRunner

    torch.set_num_threads(threads)
    settings = Settings(model_path=weights, device="cpu")
    runner = ModelRunner.load(weights, "cpu", threads=threads)
    buffer = io.BytesIO()
    Image.fromarray(_photo(1600, 1200)).save(buffer, "JPEG", quality=92)
    data = buffer.getvalue()
    options = JobOptions(background="blue")
    plain = JobOptions(background="blue", decontaminate=False)
    decoded = decode(data, settings)

    def matte_of(photo: object) -> object:
        prepared = prepare(photo, settings)
        (small,) = runner.predict([prepared.network_input])
        return finish(prepared, small, JobOptions(outputs=["matte"])).matte

    matte = matte_of(decoded)

    def end_to_end() -> object:
        photo = decode(data, settings)
        return render_outputs(photo, matte_of(photo), options).items

    figures = {
        "decode": _timed(lambda: decode(data, settings), repeats)[0],
        "matte (resize, network, back to full size)": _timed(lambda: matte_of(decoded), repeats)[0],
        "composite+encode, decontaminated": _timed(lambda: render_outputs(decoded, matte, options), repeats)[0],
        "composite+encode, naive blend": _timed(lambda: render_outputs(decoded, matte, plain), repeats)[0],
        "total": _timed(end_to_end, repeats)[0],
    }
    return {name: round(value, 1) for name, value in figures.items()} | {
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    }


def _in_subprocess(args: list[str]) -> dict[str, object]:
    output = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True, cwd=REPO
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def _default_weights() -> Path:
    if FIXTURE_WEIGHTS.is_file():
        return FIXTURE_WEIGHTS
    import torch

    from worker.checkpoint import save_official_format
    from worker.modnet import MODNet

    torch.manual_seed(0)
    path = Path(tempfile.mkdtemp()) / "random.ckpt"
    save_official_format(MODNet(), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: "mode:size" or "pipeline"
    args = parser.parse_args()
    weights = args.weights or _default_weights()

    if args.case == "pipeline":
        print(json.dumps(run_pipeline_case(weights, args.repeats, args.threads)))
        return
    if args.case:
        mode, size = args.case.split(":")
        print(json.dumps(run_model_case(mode, size, weights, args.repeats, args.threads)))
        return

    common = ["--weights", str(weights), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    print(f"weights: {weights.name}; threads: {args.threads}; repeats: {args.repeats}")
    print(f"{'size':8} {'mode':20} {'median ms':>10} {'min ms':>8} {'peak RSS MB':>12} {'max |d| vs ours':>16}")
    for size in SIZES:
        results = {mode: _in_subprocess([*common, "--case", f"{mode}:{size}"]) for mode in MODES}
        reference = np.asarray(results["ours"]["matte"])
        for mode in MODES:
            r = results[mode]
            diff = "" if r["matte"] is None else f"{np.abs(np.asarray(r['matte']) - reference).max():.1e}"
            print(f"{size:8} {mode:20} {r['ms_median']:>10} {r['ms_min']:>8} {r['peak_rss_mb']:>12} {diff:>16}")
        ratio = results["tutorial"]["ms_median"] / results["ours"]["ms_median"]
        rss = results["tutorial"]["peak_rss_mb"] / results["ours"]["peak_rss_mb"]
        print(f"{size:8} tutorial/ours: time x{ratio:.2f}, peak RSS x{rss:.2f}")
    pipeline = _in_subprocess([*common, "--case", "pipeline"])
    print("full pipeline, 1200x1600 JPEG -> blue JPEG (ms, median):")
    for name, value in pipeline.items():
        print(f"  {name}: {value}")


if __name__ == "__main__":
    main()
