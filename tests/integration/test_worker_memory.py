"""The largest photo the limits allow goes through the worker's pipeline within the memory it is admitted with.

A process of its own decodes a 50 Mpx PNG, runs MODNet (the fixture weights) at its capped input size,
composites at full resolution and encodes, as a worker does; its peak resident memory above what it held
before the job (MODNet loaded and warmed up) must stay within ``job_peak_bytes``, the estimate the
worker's memory budget admits jobs by. The whole-image implementation this replaced peaked at about
5.2 GB on this photo, 2.5 times the bound.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_memory import write_photo
from common.pipeline import job_peak_bytes
from common.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MEASURE = REPO / "bench" / "bench_memory.py"


@pytest.fixture(scope="module")
def largest_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A square PNG of the most pixels ``max_image_pixels`` allows."""
    side = math.isqrt(Settings().max_image_pixels)
    path = tmp_path_factory.mktemp("largest") / "largest.png"
    write_photo(path, side, side)
    return path


def test_largest_allowed_photo_stays_within_its_memory_estimate(largest_photo: Path, modnet_fixtures: Path) -> None:
    command = [
        sys.executable,
        str(MEASURE),
        "--child",
        "current",
        "--photo",
        str(largest_photo),
        "--case",
        "blue",
        "--weights",
        str(modnet_fixtures / "random_weights.ckpt"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])

    side = math.isqrt(Settings().max_image_pixels)
    assert measured["pixels"] == side * side
    assert measured["composite_size"] == [side, side]
    assert measured["composite_bytes"] > 0
    bound = job_peak_bytes(measured["pixels"])
    print(f"\npeak RSS above baseline {measured['peak_bytes'] / 1e6:.0f} MB, bound {bound / 1e6:.0f} MB")
    assert measured["peak_bytes"] <= bound
