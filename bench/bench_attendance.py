"""Batcher attendance: jobs through a worker service with the batchers' attendance (a batch runs at once
when every job the worker is rendering waits on one) against the same service without it (every batch
that is not full waits out ``BACKDROP_MAX_DELAY_MS``), measured in one run.

    python bench/bench_attendance.py [--jobs 8] [--rounds 5] [--concurrency 2] [--weights PATH]

One ``WorkerService`` in this process, on its own Redis and local storage, with the engine a CPU worker
chooses; ``--concurrency`` threads take the jobs, as a worker's pool threads do. Two cases, rounds
alternated (with, without, with, ...): ``--jobs`` 1200x1600 JPEGs to a blue JPEG taken by the threads,
and one job at a time. Prints jobs/s, the median time of a job in ``process_job``, and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_core import _default_weights  # noqa: E402
from bench.bench_service import _jpegs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=None)
    args = parser.parse_args()

    import redis

    from common.jobs import InputInfo, JobStatus, new_job_id
    from common.options import JobOptions
    from common.settings import Settings
    from common.storage import LocalStorage, input_key
    from worker.embedded import free_port, start_redis
    from worker.processing import process_job
    from worker.runtime import ModelRunner
    from worker.service import WorkerService

    root = Path(tempfile.mkdtemp(prefix="backdrop-bench-"))
    port = free_port()
    server = start_redis(root / "redis", port, persist=False, log_path=root / "redis.log")
    settings = Settings(
        model_path=args.weights or _default_weights(),
        device="cpu",
        torch_threads=args.threads,
        redis_url=f"redis://127.0.0.1:{port}/0",
        data_dir=root / "data",
    )
    runner = ModelRunner.from_settings(settings)
    runner.warm_up()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    storage = LocalStorage(root / "storage", base_url="http://127.0.0.1", secret=b"k" * 32)
    service = WorkerService(settings, runner, storage, client)
    attendance = service.attendance
    with_attendance = attendance.everyone_waiting
    photos = _jpegs(args.jobs, 1200, 1600)
    options = JobOptions(background="blue")

    def new_jobs(count: int) -> list[str]:
        ids = []
        for data in photos[:count]:
            job_id = new_job_id()
            storage.put(input_key(job_id), data, "application/octet-stream")
            info = InputInfo(bytes=len(data), format="JPEG", width=1200, height=1600)
            service.jobs.create(job_id, input_key(job_id), info, options, owner="bench")
            ids.append(job_id)
        return ids

    def timed_job(job_id: str) -> float:
        start = time.perf_counter()
        outcome = process_job(service, job_id)
        if outcome.status is not JobStatus.SUCCEEDED:
            raise RuntimeError(f"job {job_id}: {outcome}")
        return time.perf_counter() - start

    def run(count: int, threads: int) -> tuple[float, list[float]]:
        ids = new_jobs(count)
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            latencies = list(pool.map(timed_job, ids))
        return time.perf_counter() - start, latencies

    cases: dict[str, Callable[[], tuple[float, list[float]]]] = {
        f"{args.jobs} jobs, {args.concurrency} threads": lambda: run(args.jobs, args.concurrency),
        "one job at a time": lambda: run(1, 1),
    }
    print(
        f"engine {runner.engine.name} {runner.precision.value}, {args.threads} torch threads, "
        f"max_delay_ms {settings.max_delay_ms}, max_batch_size {settings.max_batch_size}, {args.rounds} rounds"
    )
    try:
        for name, case in cases.items():
            results: dict[bool, list[tuple[float, list[float]]]] = {True: [], False: []}
            for flag in (True, False):  # warm-up of both
                attendance.everyone_waiting = with_attendance if flag else (lambda: False)  # type: ignore[method-assign]
                case()
            for round_number in range(args.rounds):
                for flag in (True, False) if round_number % 2 == 0 else (False, True):
                    attendance.everyone_waiting = with_attendance if flag else (lambda: False)  # type: ignore[method-assign]
                    results[flag].append(case())
            print(f"\n{name}:")
            rates, medians = {}, {}
            for flag, label in ((True, "with attendance"), (False, "without (the delay only)")):
                jobs = len(results[flag][0][1])
                rates[flag] = statistics.median(jobs / elapsed for elapsed, _ in results[flag])
                medians[flag] = statistics.median(latency for _, latencies in results[flag] for latency in latencies)
                print(f"  {label:<26} {rates[flag]:6.2f} jobs/s, median job {medians[flag] * 1000:7.1f} ms")
            print(
                f"  ratio with/without: jobs/s x{rates[True] / rates[False]:.3f}, "
                f"median job time x{medians[True] / medians[False]:.3f}"
            )
    finally:
        service.close()
        server.stop()


if __name__ == "__main__":
    main()
