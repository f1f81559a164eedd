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
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_upload_memory import export_tree  # noqa: E402
from worker.embedded import ManagedProcess, free_port, start_redis  # noqa: E402

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


def run_child(tree: Path, redis_url: str, jobs: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, redis_url, str(jobs)], cwd=tree, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])["ms_per_job"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", default=BASELINE_COMMIT, help="the commit to compare against")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        trees = {"baseline": export_tree(args.baseline, root / "baseline"), "today": REPO}
        port = free_port()
        redis: ManagedProcess = start_redis(root / "redis", port, persist=True, log_path=root / "redis.log")
        try:
            url = f"redis://127.0.0.1:{port}/0"
            times: dict[str, list[float]] = {name: [] for name in trees}
            ratios = []
            for round_index in range(args.rounds):
                order = list(trees) if round_index % 2 == 0 else list(reversed(trees))
                measured = {}
                for name in order:
                    subprocess.run(
                        [sys.executable, "-c", f"import redis; redis.Redis.from_url({url!r}).flushdb()"], check=True
                    )
                    measured[name] = run_child(trees[name], url, args.jobs)
                    times[name].append(measured[name])
                ratios.append(measured["baseline"] / measured["today"])
                print(
                    f"round {round_index + 1}: baseline {measured['baseline']:.3f} ms/job, "
                    f"today {measured['today']:.3f} ms/job, x{ratios[-1]:.2f}",
                    flush=True,
                )
        finally:
            redis.stop()
    for name, values in times.items():
        label = f"baseline {args.baseline}" if name == "baseline" else "today"
        print(f"{label}: median {statistics.median(values):.3f} ms/job ({min(values):.3f}-{max(values):.3f})")
    print(f"ratio baseline/today (median of rounds): x{statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
