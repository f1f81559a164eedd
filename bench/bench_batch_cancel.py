"""Canceling a batch's unfinished jobs (``POST /v1/batches/{id}/cancel``, and a failed batch request's
withdrawal): today's pipelined cancels against a baseline commit's one round trip a job, interleaved
(A B, then B A) in one run.

    flock /tmp/bench.lock python bench/bench_batch_cancel.py [--jobs 10000] [--rounds 5] [--baseline dc44354]

One Redis (started here) holds, for each measurement, a fresh batch of ``--jobs`` queued jobs written
by today's stores. A process of its own per tree (the baseline exported from git into a temporary
directory) withdraws the batch through that tree's ``BatchStore.withdraw`` and prints the time it took.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_upload_memory import ratio_rounds, run_in_tree, trees_and_redis  # noqa: E402

# The last commit that canceled a batch's jobs one round trip at a time.
BASELINE_COMMIT = "dc44354"

CHILD = """
import json, sys, time
sys.path.insert(0, ".")
import redis
from common.batches import BatchStore
from common.jobs import JobStore

redis_url, batch_id, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = redis.Redis.from_url(redis_url, decode_responses=True)
batches = BatchStore(client, JobStore(client, 3600))
start = time.perf_counter()
canceled = batches.withdraw(batch_id)
elapsed = time.perf_counter() - start
if canceled != expected:
    raise SystemExit(f"canceled {canceled} jobs, expected {expected}")
print(json.dumps({"seconds": elapsed}))
"""


def queued_batch(redis_url: str, jobs: int) -> str:
    """A batch of ``jobs`` queued jobs, written as a batch request writes them."""
    import redis

    from common.batches import BatchStore
    from common.jobs import InputInfo, JobStore, new_job_id
    from common.options import JobOptions
    from common.storage import input_key

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = JobStore(client, 3600)
    batches = BatchStore(client, store)
    batch = batches.create("bench", jobs)
    info, options = InputInfo(bytes=10, format="PNG", width=4, height=3), JobOptions()
    records = []
    for _ in range(jobs):
        job_id = new_job_id()
        records.append(store.new(job_id, input_key(job_id), info, options, owner="bench", batch_id=batch.id))
    for start in range(0, jobs, 1000):
        chunk = records[start : start + 1000]
        store.insert_many(chunk)
        batches.add_jobs(batch, [job.id for job in chunk])
    client.close()
    return batch.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", default=BASELINE_COMMIT, help="the commit to compare against")
    args = parser.parse_args()
    with trees_and_redis(args.baseline) as (_root, trees, url):
        print(f"withdrawing batches of {args.jobs} queued jobs", flush=True)

        def measure(_name: str, tree: Path, _round: int) -> float:
            batch_id = queued_batch(url, args.jobs)
            return float(run_in_tree(tree, CHILD, url, batch_id, str(args.jobs))["seconds"])

        ratio_rounds(trees, args.rounds, measure, "s", args.baseline)


if __name__ == "__main__":
    main()
