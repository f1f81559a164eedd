"""The API's resident memory while it takes a 1 GiB multipart batch, today's code against a baseline
commit's, interleaved (A B A B) in one run.

    flock /tmp/bench.lock python bench/bench_upload_memory.py [--photos 50] [--mib 20] [--rounds 2]

Each run starts its own API under gunicorn (one worker process, 4 threads, the same command for both
trees; the baseline tree is exported from git into a temporary directory) over its own Redis and local
storage, sends one small batch to warm it up, resets the worker's peak RSS (``/proc/<pid>/clear_refs``),
then streams one batch of ``--photos`` photos of ``--mib`` MiB each (the client never holds more than
one photo) and reads the kernel's peak (VmHWM). Prints RSS before, the peak, its growth and the ratio
of the growths, baseline/today.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from worker.embedded import BIN_DIR, ManagedProcess, free_port, start_redis, wait_until  # noqa: E402

# The last commit whose API read every photo of a multipart batch into memory.
BASELINE_COMMIT = "e56f792"
MiB = 2**20


def padded_png(size: int, seed: int = 0) -> bytes:
    """A valid PNG of ``size`` bytes: a small image, then bytes after its end (decoders ignore them)."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(buffer, "PNG")
    head = buffer.getvalue()
    return head + rng.integers(0, 256, size - len(head), dtype=np.uint8).tobytes()


def export_tree(commit: str, into: Path) -> Path:
    """The files of ``commit`` under ``into`` (git archive: the repository itself is not touched)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


@contextmanager
def scratch_and_trees(baseline: str) -> Iterator[tuple[Path, dict[str, Path]]]:
    """A scratch folder, removed afterwards, and the trees to compare: ``baseline`` exported into it (as
    ``baseline``) and this checkout (as ``today``). Both run in this environment: a baseline older than
    ``e079c45`` imports pybreaker, no longer a dependency (``pip install pybreaker`` to compare with one)."""
    with tempfile.TemporaryDirectory(prefix="backdrop-bench-", ignore_cleanup_errors=True) as scratch:
        root = Path(scratch)
        yield root, {"baseline": export_tree(baseline, root / "baseline"), "today": REPO}


@contextmanager
def trees_and_redis(baseline: str, *, persist: bool = False) -> Iterator[tuple[Path, dict[str, Path], str]]:
    """``scratch_and_trees``, and the URL of a Redis of its own in the scratch folder, stopped afterwards."""
    with scratch_and_trees(baseline) as (root, trees):
        port = free_port()
        server = start_redis(root / "redis", port, persist=persist, log_path=root / "redis.log")
        try:
            yield root, trees, f"redis://127.0.0.1:{port}/0"
        finally:
            server.stop()


def run_in_tree(tree: Path, code: str, *argv: str) -> dict[str, Any]:
    """Run ``code`` with ``argv`` in a Python process of its own, in ``tree`` (against that tree's
    modules); the JSON object its last line of output prints."""
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=tree, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def in_turn(names: Sequence[str], rounds: int) -> Iterator[tuple[int, list[str]]]:
    """Each round's number and the order to run ``names`` in: as given, then reversed, and so on."""
    for round_index in range(rounds):
        yield round_index, list(names) if round_index % 2 == 0 else list(reversed(names))


def ratio_rounds(
    trees: Mapping[str, Path], rounds: int, measure: Callable[[str, Path, int], float], unit: str, baseline: str
) -> None:
    """Measure the ``baseline`` and ``today`` trees ``rounds`` times, in alternating order (``in_turn``):
    ``measure(name, tree, round)`` gives one figure (lower is better). Prints each round's figures and
    ratio baseline/today, then each tree's median and range and the median of the per-round ratios."""
    times: dict[str, list[float]] = {name: [] for name in trees}
    ratios = []
    for round_index, order in in_turn(list(trees), rounds):
        measured = {name: measure(name, trees[name], round_index) for name in order}
        for name, value in measured.items():
            times[name].append(value)
        ratios.append(measured["baseline"] / measured["today"])
        print(
            f"round {round_index + 1}: baseline {measured['baseline']:.3f} {unit}, "
            f"today {measured['today']:.3f} {unit}, x{ratios[-1]:.2f}",
            flush=True,
        )
    for name, values in times.items():
        label = f"baseline {baseline}" if name == "baseline" else "today"
        print(f"{label}: median {statistics.median(values):.3f} {unit} ({min(values):.3f}-{max(values):.3f})")
    print(f"ratio baseline/today (median of rounds): x{statistics.median(ratios):.2f}")


def memory_of(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak since the last ``reset_peak``) of process ``pid``, in bytes (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def reset_peak(pid: int) -> None:
    """Set the peak of ``pid`` to its present RSS (Linux 4.0 and later)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def post_batch(port: int, photo: bytes, count: int) -> tuple[int, bytes]:
    """A multipart batch of ``count`` copies of ``photo``, streamed part by part."""
    boundary = uuid.uuid4().hex
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="background"\r\n\r\nwhite\r\n'.encode()
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="p.png"\r\n'.encode()
    part += b"Content-Type: image/png\r\n\r\n"
    tail = f"--{boundary}--\r\n".encode()
    length = len(head) + count * (len(part) + len(photo) + 2) + len(tail)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.putrequest("POST", "/v1/batches")
        connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        connection.putheader("Content-Length", str(length))
        connection.endheaders()
        connection.send(head)
        for _ in range(count):
            connection.send(part)
            connection.send(photo)
            connection.send(b"\r\n")
        connection.send(tail)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def run_once(tree: Path, label: str, photo: bytes, count: int, root: Path) -> dict[str, float]:
    """One API process on ``tree``: its worker's RSS before and at its peak during the batch."""
    work = root / f"{label}-{uuid.uuid4().hex[:6]}"
    redis_port, port = free_port(), free_port()
    redis_process = start_redis(work / "redis", redis_port, persist=False, log_path=work / "redis.log")
    env = {key: value for key, value in os.environ.items() if not key.startswith("BACKDROP_")}
    env.update(
        PYTHONPATH=str(tree),
        BACKDROP_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        BACKDROP_STORAGE="local",
        BACKDROP_DATA_DIR=str(work / "data"),
        BACKDROP_AUTH="disabled",
        BACKDROP_LOG_LEVEL="WARNING",
        BACKDROP_LOCAL_STORAGE_MIN_FREE_BYTES="0",
    )
    argv = [str(BIN_DIR / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4"]
    api = ManagedProcess("api", [*argv, "api.app:create_app()"], env=env, log_path=work / "api.log", cwd=tree)
    try:
        master = psutil.Process(api.process.pid)
        wait_until(lambda: bool(master.children()) or not api.alive(), 60, "gunicorn's worker")
        (worker,) = master.children()
        status, body = post_batch(port, photo[: 256 * 1024], 1)  # warm-up
        assert status == 202, body[:300]
        reset_peak(worker.pid)
        before = memory_of(worker.pid)["VmRSS"]
        start = time.perf_counter()
        status, body = post_batch(port, photo, count)
        seconds = time.perf_counter() - start
        peak = memory_of(worker.pid)["VmHWM"]
        assert status == 202 and json.loads(body)["total"] == count, body[:300]
        return {"before": before / MiB, "peak": peak / MiB, "growth": (peak - before) / MiB, "seconds": seconds}
    finally:
        api.stop(timeout=20)
        redis_process.stop(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=50)
    parser.add_argument("--mib", type=float, default=20.0, help="size of each photo")
    parser.add_argument("--rounds", type=int, default=2, help="A B pairs")
    parser.add_argument("--baseline", default=BASELINE_COMMIT, help="the commit to compare against")
    args = parser.parse_args()
    if args.rounds < 1 or not 1 <= args.photos <= 200:
        parser.error("--rounds at least 1, --photos 1..200")
    photo = padded_png(int(args.mib * MiB))
    total = len(photo) * args.photos / MiB
    with scratch_and_trees(args.baseline) as (root, trees):
        results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for round_index in range(args.rounds):
            for name, tree in trees.items():
                result = run_once(tree, name, photo, args.photos, root)
                results[name].append(result)
                print(
                    f"round {round_index + 1} {name:8s}: RSS {result['before']:.0f} MiB -> peak {result['peak']:.0f}"
                    f" MiB (+{result['growth']:.0f} MiB), {result['seconds']:.1f} s",
                    flush=True,
                )
    print(
        f"\n{args.photos} photos x {args.mib:g} MiB = {total:.0f} MiB in one multipart batch; medians of {args.rounds}"
    )
    print("| code | RSS before MiB | peak RSS MiB | growth MiB | seconds |")
    print("|---|---:|---:|---:|---:|")
    medians = {}
    for name, runs in results.items():
        medians[name] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        m = medians[name]
        label = f"baseline {args.baseline}" if name == "baseline" else "today"
        print(f"| {label} | {m['before']:.0f} | {m['peak']:.0f} | {m['growth']:.0f} | {m['seconds']:.1f} |")
    ratio = medians["baseline"]["growth"] / max(medians["today"]["growth"], 0.1)
    print(f"\ngrowth ratio baseline/today: x{ratio:.0f}")


if __name__ == "__main__":
    main()
