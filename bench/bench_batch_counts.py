"""A batch's counts per status: the tally in its record against counting its jobs one by one (what
every poll and every job's completion check did before), for batches of several sizes, in one run.

    python bench/bench_batch_counts.py [--sizes 100 1000 10000] [--rounds 7]

Starts its own Redis; writes each batch's records through the stores, with some jobs started,
succeeded and failed; then times both ways of counting, alternated round by round (median of rounds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import redis

    from common.batches import BatchStore
    from common.jobs import InputInfo, JobStore, new_job_id
    from common.options import JobOptions
    from worker.embedded import free_port, start_redis

    root = Path(tempfile.mkdtemp(prefix="backdrop-bench-"))
    port = free_port()
    server = start_redis(root / "redis", port, persist=False, log_path=root / "redis.log")
    try:
        client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        jobs = JobStore(client, 3600)
        batches = BatchStore(client, jobs)
        info, options = InputInfo(bytes=10, format="PNG", width=4, height=3), JobOptions()
        print("| jobs in the batch | tally ms | counted one by one ms | ratio |")
        print("|---:|---:|---:|---:|")
        for size in args.sizes:
            batch = batches.create("bench", size)
            for index in range(size):
                job_id = new_job_id()
                jobs.create(job_id, f"inputs/{job_id}", info, options, owner="bench", batch_id=batch.id)
                batches.add_jobs(batch, [job_id])
                if index % 3 == 0:
                    jobs.start(job_id)
                if index % 6 == 0:
                    jobs.succeed(job_id, {})
            if batches.counts(batch.id) != batches._scanned_counts(batch.id):
                raise RuntimeError("the tally and the count disagree")
            tally, scanned = [], []
            for round_number in range(args.rounds):
                ways = [(tally, batches.counts), (scanned, batches._scanned_counts)]
                for times, count in ways if round_number % 2 == 0 else reversed(ways):
                    start = time.perf_counter()
                    count(batch.id)
                    times.append((time.perf_counter() - start) * 1000)
            a, b = statistics.median(tally), statistics.median(scanned)
            print(f"| {size} | {a:.2f} | {b:.2f} | {a / b:.4f} |", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
