"""Service benchmark: N jobs through API -> Redis/Celery -> worker -> storage, against the same N
photos through the in-process pipeline, in one run.

    python bench/bench_service.py [--jobs 24] [--rounds 3] [--width 1200 --height 1600] [--weights PATH]

Starts its own Redis, one worker and the API (local storage) in a temporary directory, once, and
loads the in-process pipeline with the engine the worker chooses from the same settings; then runs
both on the same photos in alternate rounds (in-process, service, in-process, ...). Prints jobs/s of
each round and their medians, p50/p95 latency from submit to succeeded (as the client sees it,
polling every 250 ms, and as the job record's timestamps say), and the ratio service/in-process.
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

POLL_SECONDS = 0.25  # the default; --poll-seconds 1 is the pace the API's Retry-After asks for


def _jpegs(count: int, width: int, height: int) -> list[bytes]:
    from PIL import Image

    photos = []
    for seed in range(count):
        buffer = io.BytesIO()
        Image.fromarray(_photo(height, width, seed)).save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
    return photos


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def worker_settings(weights: Path, threads: int) -> dict[str, str]:
    """The worker's engine settings, which the in-process baseline reads too (same engine, same cache)."""
    return {
        "BACKDROP_MODEL_PATH": str(weights),
        "BACKDROP_DEVICE": "cpu",
        "BACKDROP_TORCH_THREADS": str(threads),
    }


class InProcess:
    """The CLI's path: one photo after another in this process, with the engine a worker would choose."""

    def __init__(self, weights: Path, threads: int) -> None:
        from common.options import JobOptions
        from common.settings import Settings
        from worker.runtime import ModelRunner

        self.settings = Settings(model_path=weights, device="cpu", torch_threads=threads)
        self.runner = ModelRunner.from_settings(self.settings)
        self.runner.warm_up()
        self.options = JobOptions(background="blue")

    def run(self, photos: list[bytes]) -> float:
        from common.pipeline import replace_photo

        start = time.perf_counter()
        for data in photos:
            replace_photo(data, self.options, self.runner.predict, self.settings)
        return time.perf_counter() - start


class Service:
    """Redis, one worker and the API (local storage) in a temporary directory, started once."""

    def __init__(self, weights: Path, threads: int, concurrency: int, poll_seconds: float) -> None:
        from tests.integration.stack import Stack
        from worker.embedded import free_port, start_redis

        self.poll_seconds = poll_seconds
        root = Path(tempfile.mkdtemp(prefix="backdrop-bench-"))
        port = free_port()
        self.redis = start_redis(root / "redis", port, persist=False, log_path=root / "redis.log")
        env = {key: value for key, value in os.environ.items() if not key.startswith("BACKDROP_")}
        env.update(
            worker_settings(weights, threads),
            BACKDROP_REDIS_URL=f"redis://127.0.0.1:{port}/0",
            BACKDROP_STORAGE="local",
            BACKDROP_DATA_DIR=str(root / "data"),
            BACKDROP_WORKER_CONCURRENCY=str(concurrency),
            # The benchmark's polling clients share one key: lift the per-key limits out of the way.
            BACKDROP_RATE_LIMIT="100000/minute",
            BACKDROP_POLL_RATE_LIMIT="100000/minute",
        )
        self.stack = Stack(env, root)
        self.stack.start_worker(concurrency=0)
        self.stack.start_api()

    def run(self, photos: list[bytes]) -> tuple[float, list[float], list[float]]:
        """Seconds for all ``photos`` submitted at once by one client thread each, and the latencies
        from submit to succeeded as the clients saw them and as the job records say."""
        submitted: dict[int, float] = {}
        done: dict[int, float] = {}
        server_latency: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()

        def client(index: int) -> None:
            submitted[index] = time.perf_counter()
            job_id = self.stack.submit(photos[index], filename="photo.jpg", background="blue").json()["id"]
            while True:
                job = self.stack.poll(job_id).json()
                if job["status"] in ("succeeded", "failed"):
                    break
                time.sleep(self.poll_seconds)
            with lock:
                done[index] = time.perf_counter()
                created = datetime.fromisoformat(job["created_at"])
                finished = datetime.fromisoformat(job["finished_at"])
                server_latency.append((finished - created).total_seconds())
                if job["status"] != "succeeded":
                    failures.append(str(job.get("error")))

        start = time.perf_counter()
        clients = [threading.Thread(target=client, args=(i,)) for i in range(len(photos))]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        elapsed = time.perf_counter() - start
        if failures:
            raise RuntimeError(f"{len(failures)} jobs failed: {failures[:3]}")
        return elapsed, [done[i] - submitted[i] for i in range(len(photos))], server_latency

    def stop(self) -> None:
        self.stack.stop()
        self.redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="in-process and service runs, alternated")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--poll-seconds", type=float, default=POLL_SECONDS, help="each client's pause between polls")
    parser.add_argument("--worker-concurrency", type=int, default=0, help="0: the worker's default")
    args = parser.parse_args()
    weights = args.weights or _default_weights()
    photos = _jpegs(args.jobs, args.width, args.height)

    baseline = InProcess(weights, args.threads)
    service = Service(weights, args.threads, args.worker_concurrency, args.poll_seconds)
    try:
        service.run(photos[:2])  # the worker's first jobs warm it up, as the baseline's warm-up pass does
        rates: list[tuple[float, float]] = []
        client_latency: list[float] = []
        server_latency: list[float] = []
        for round_number in range(1, args.rounds + 1):
            in_process = args.jobs / baseline.run(photos)
            elapsed, client, server = service.run(photos)
            rates.append((in_process, args.jobs / elapsed))
            client_latency += client
            server_latency += server
            print(
                f"round {round_number}: in-process {in_process:.2f} jobs/s, service {args.jobs / elapsed:.2f} "
                f"jobs/s, ratio {args.jobs / elapsed / in_process:.2f}"
            )
    finally:
        service.stop()
    print(f"{args.jobs} JPEGs of {args.width}x{args.height} -> blue JPEG; torch threads: {args.threads}")
    print(f"engine (both): {baseline.runner.engine.version}, {baseline.runner.precision.value}")
    concurrency = args.worker_concurrency or "default"
    print(f"service: 1 worker, concurrency {concurrency}, clients polling every {args.poll_seconds} s")
    print(f"in-process pipeline, median of rounds: {statistics.median(r[0] for r in rates):.2f} jobs/s")
    print(f"service, median of rounds: {statistics.median(r[1] for r in rates):.2f} jobs/s")
    print(
        "service latency submit -> succeeded, client view: "
        f"p50 {statistics.median(client_latency):.2f} s, p95 {_percentile(client_latency, 95):.2f} s"
    )
    print(
        "service latency created -> finished, job record: "
        f"p50 {statistics.median(server_latency):.2f} s, p95 {_percentile(server_latency, 95):.2f} s"
    )
    ratios = [service_rate / in_process for in_process, service_rate in rates]
    print(f"throughput ratio service / in-process, median of rounds: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
