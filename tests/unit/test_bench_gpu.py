"""bench/bench_gpu.py's quick mode on the CPU: every step of the GPU benchmark runs and reports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_quick_mode_reports_every_batch_size_and_both_pipelines() -> None:
    result = subprocess.run(
        [sys.executable, "bench/bench_gpu.py", "--device", "cpu", "--quick", "--threads", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,  # a guard against a hang; the run takes a few seconds
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    rates = {
        (label.strip(), int(batch)): float(rate)
        for label, batch, rate in re.findall(r"^\s+(\S+)\s+batch\s+(\d+):\s+([\d.]+) img/s", out, re.M)
    }
    assert {batch for label, batch in rates if label == "fp32"} == {1, 2, 4}
    assert all(rate > 0 for rate in rates.values())
    assert re.search(r"^\s+fp32\s+batch\s+1:.*x1\.00$", out, re.M)  # the baseline is its own ratio
    pipelines = re.findall(r"^\s+(CPU path|GPU pipeline)[^:]*:\s+([\d.]+) img/s\s+x([\d.]+)$", out, re.M)
    assert [name for name, _, _ in pipelines] == ["CPU path", "GPU pipeline"]
    assert float(pipelines[0][2]) == 1.0 and float(pipelines[1][1]) > 0
    assert "Pillow and OpenCV on the host" in out  # no nvJPEG on a CPU
