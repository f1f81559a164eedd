"""Time to accept a JSON batch, per job: today's chunked writes against a baseline commit's one job at
a time, interleaved (A B A B) in one run.

    flock /tmp/bench.lock python bench/bench_batch_submit.py [--jobs 2000] [--rounds 5]

Each round runs, for each tree (the baseline exported from git into a temporary directory), a process
of its own that builds the API's context over one Redis (started here, append-only as ``backdrop serve``
runs it) and calls ``enqueue_batch`` with ``--jobs`` image URLs, as ``POST /v1/batches`` does once the
body is validated: the batch record, the job records, the batch's job list and the Celery messages.
Prints ms per job for each and the ratio baseline/today (median of the per-round ratios).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402

from bench.bench_upload_memory import ratio_rounds, run_in_tree, trees_and_redis  # noqa: E402

# The last commit that wrote a batch's records one job at a time.
BASELINE_COMMIT = "ff718f3"

# Run in each tree's own directory, against that tree's modules.
CHILD = """
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, ".")
from api.context import ApiContext
from api.submissions import JobRequest, enqueue_batch
from common.options import JobOptions
from common.settings import Settings

redis_url, jobs = sys.argv[1], int(sys.argv[2])
settings = Settings(
    redis_url=redis_url, storage="local", data_dir=Path(tempfile.mkdtemp()), max_pending_jobs=2 * jobs + 100
)
api = ApiContext.build(settings)
requests = [JobRequest(JobOptions(), image_url=f"https://example.invalid/{n}.jpg") for n in range(jobs)]
enqueue_batch(api, "warm-up", requests[:50])
start = time.perf_counter()
batch = enqueue_batch(api, "bench", requests)
seconds = time.perf_counter() - start
assert api.batches.counts(batch.id).queued == jobs
print(json.dumps({"ms_per_job": seconds * 1000 / jobs}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", default=BASELINE_COMMIT, help="the commit to compare against")
    args = parser.parse_args()
    with trees_and_redis(args.baseline, persist=True) as (_root, trees, url):
        client = redis.Redis.from_url(url)

        def measure(name: str, tree: Path, round_index: int) -> float:
            client.flushdb()
            return float(run_in_tree(tree, CHILD, url, str(args.jobs))["ms_per_job"])

        ratio_rounds(trees, args.rounds, measure, "ms/job", args.baseline)
        client.close()


if __name__ == "__main__":
    main()
