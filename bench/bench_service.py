"""Service benchmark: N jobs through API -> Redis/Celery -> worker -> storage, against the same N
photos through the in-process pipeline, in one run.

    python bench/bench_service.py [--jobs 24] [--width 1200 --height 1600] [--weights PATH]

Starts its own Redis, one worker and the API (local storage) in a temporary directory. Prints
jobs/s for both, p50/p95 latency from submit to succeeded (as the client sees it, polling every
250 ms, and as the job record's timestamps say), and the ratio service/in-process.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_core import _default_weights, _photo  # noqa: E402

POLL_SECONDS = 0.25


def _jpegs(count: int, width: int, height: int) -> list[bytes]:
    from PIL import Image

    photos = []
    for seed in range(count):
        buffer = io.BytesIO()
        Image.fromarray(_photo(height, width, seed)).save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
    return photos


def in_process(photos: list[bytes], weights: Path, threads: int) -> float:
    """Seconds for the CLI's path: one photo after another in this process."""
    from common.options import JobOptions
    from common.pipeline import replace_photo
    from common.settings import Settings
    from worker.runtime import ModelRunner

    settings = Settings(model_path=weights, device="cpu")
    runner = ModelRunner.load(weights, "cpu", threads=threads)
    runner.warm_up()
    options = JobOptions(background="blue")
    start = time.perf_counter()
    for data in photos:
        replace_photo(data, options, runner.predict, settings)
    return time.perf_counter() - start


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def through_service(
    photos: list[bytes], weights: Path, threads: int, concurrency: int
) -> tuple[float, list[float], list[float]]:
    from tests.integration.stack import Stack
    from worker.embedded import free_port, start_redis

    root = Path(tempfile.mkdtemp(prefix="backdrop-bench-"))
    port = free_port()
    redis_process = start_redis(root / "redis", port, persist=False, log_path=root / "redis.log")
    env = {key: value for key, value in os.environ.items() if not key.startswith("BACKDROP_")}
    env.update(
        BACKDROP_REDIS_URL=f"redis://127.0.0.1:{port}/0",
        BACKDROP_STORAGE="local",
        BACKDROP_DATA_DIR=str(root / "data"),
        BACKDROP_MODEL_PATH=str(weights),
        BACKDROP_DEVICE="cpu",
        BACKDROP_TORCH_THREADS=str(threads),
        BACKDROP_WORKER_CONCURRENCY=str(concurrency),
        # The benchmark's 24 polling clients share one key: lift the per-key limit out of the way.
        BACKDROP_RATE_LIMIT="100000/minute",
    )
    stack = Stack(env, root)
    try:
        stack.start_worker(concurrency=0)
        stack.start_api()
        submitted: dict[int, float] = {}
        done: dict[int, float] = {}
        server_latency: list[float] = []
        lock = threading.Lock()

        def client(index: int) -> None:
            submitted[index] = time.perf_counter()
            job_id = stack.submit(photos[index], filename="photo.jpg", background="blue").json()["id"]
            while True:
                job = stack.poll(job_id).json()
                if job["status"] in ("succeeded", "failed"):
                    break
                time.sleep(POLL_SECONDS)
            with lock:
                done[index] = time.perf_counter()
                created = datetime.fromisoformat(job["created_at"])
                finished = datetime.fromisoformat(job["finished_at"])
                server_latency.append((finished - created).total_seconds())
            assert job["status"] == "succeeded", job

        start = time.perf_counter()
        clients = [threading.Thread(target=client, args=(i,)) for i in range(len(photos))]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        elapsed = time.perf_counter() - start
        client_latency = [done[i] - submitted[i] for i in range(len(photos))]
        return elapsed, client_latency, server_latency
    finally:
        stack.stop()
        redis_process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--worker-concurrency", type=int, default=0, help="0: the worker's default")
    args = parser.parse_args()
    weights = args.weights or _default_weights()
    photos = _jpegs(args.jobs, args.width, args.height)

    baseline = in_process(photos, weights, args.threads)
    elapsed, client_latency, server_latency = through_service(photos, weights, args.threads, args.worker_concurrency)
    base_rate = args.jobs / baseline
    rate = args.jobs / elapsed
    print(f"{args.jobs} JPEGs of {args.width}x{args.height} -> blue JPEG; torch threads: {args.threads}")
    print(f"in-process pipeline: {baseline:.1f} s, {base_rate:.2f} jobs/s")
    concurrency = args.worker_concurrency or "default"
    print(f"service (1 worker, concurrency {concurrency}): {elapsed:.1f} s, {rate:.2f} jobs/s")
    print(
        "service latency submit -> succeeded, client view: "
        f"p50 {statistics.median(client_latency):.2f} s, p95 {_percentile(client_latency, 95):.2f} s"
    )
    print(
        "service latency created -> finished, job record: "
        f"p50 {statistics.median(server_latency):.2f} s, p95 {_percentile(server_latency, 95):.2f} s"
    )
    print(f"throughput ratio service / in-process: {rate / base_rate:.2f}")


if __name__ == "__main__":
    main()
