"""A batch's results.zip: time to its first byte, time to its last, and the API's peak memory, today's
streamed zip against a baseline commit's spooled one, interleaved (A B A B) in one run.

    flock /tmp/bench.lock python bench/bench_batch_zip.py [--jobs 1000] [--kib 200] [--rounds 3]

One Redis (started here) and one local storage directory hold a batch of ``--jobs`` succeeded jobs,
each with a ``--kib`` KiB composite, written once by today's stores. Each round runs, for each tree (the
baseline exported from git into a temporary directory), a process of its own that builds that tree's
API app over them (authentication off, as ``backdrop serve`` runs) and reads the zip through Flask's
test client chunk by chunk, as a client downloading it would.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_upload_memory import in_turn, run_in_tree, trees_and_redis  # noqa: E402

# The last commit that wrote the whole zip to a spool before sending its first byte.
BASELINE_COMMIT = "32928f1"

CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, ".")
from api.app import create_app
from common.settings import Settings

redis_url, data_dir, batch_id = sys.argv[1], sys.argv[2], sys.argv[3]
app = create_app(Settings(redis_url=redis_url, storage="local", data_dir=Path(data_dir), auth="disabled"))
client = app.test_client()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
response = client.get(f"/v1/batches/{batch_id}/results.zip", buffered=False)
assert response.status_code == 200, response.status_code
first, size = None, 0
for chunk in response.response:
    if first is None and chunk:
        first = time.perf_counter() - start
    size += len(chunk)
total = time.perf_counter() - start
response.close()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"first_s": first, "total_s": total, "bytes": size, "peak_growth_mb": (peak - before) / 1024}))
"""


def populate(redis_url: str, data_dir: Path, jobs: int, kib: int) -> str:
    import numpy as np
    import redis

    from common.api_keys import ANONYMOUS
    from common.batches import BatchStore
    from common.jobs import InputInfo, JobStore, ResultInfo, new_job_id
    from common.options import JobOptions
    from common.settings import Settings
    from common.storage import input_key, result_key
    from common.storage.factory import storage_from_settings

    settings = Settings(redis_url=redis_url, storage="local", data_dir=data_dir)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = JobStore(client, settings.job_ttl_seconds)
    batches = BatchStore(client, store)
    storage = storage_from_settings(settings)
    batch = batches.create(ANONYMOUS, jobs)
    rng = np.random.default_rng(0)
    ids = []
    for _ in range(jobs):
        job_id = new_job_id()
        info = InputInfo(bytes=1, format="JPEG", width=1, height=1)
        store.create(job_id, input_key(job_id), info, JobOptions(), owner=ANONYMOUS, batch_id=batch.id)
        data = rng.integers(0, 256, kib * 1024, dtype=np.uint8).tobytes()
        key = result_key(job_id, "composite.jpg")
        storage.put(key, data, "image/jpeg")
        store.start(job_id)
        result = ResultInfo(key=key, format="jpeg", media_type="image/jpeg", bytes=len(data), width=1, height=1)
        store.succeed(job_id, {"composite": result})
        ids.append(job_id)
    batches.add_jobs(batch, ids)
    client.close()
    return batch.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--kib", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE_COMMIT, help="the commit to compare against")
    args = parser.parse_args()
    with trees_and_redis(args.baseline) as (root, trees, url):
        data_dir = root / "data"
        batch_id = populate(url, data_dir, args.jobs, args.kib)
        print(f"a batch of {args.jobs} results of {args.kib} KiB", flush=True)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for round_index, order in in_turn(list(trees), args.rounds):
            for name in order:
                measured = run_in_tree(trees[name], CHILD, url, str(data_dir), batch_id)
                results[name].append(measured)
                print(
                    f"round {round_index + 1} {name}: first byte {measured['first_s'] * 1000:.1f} ms, "
                    f"last {measured['total_s']:.2f} s, {measured['bytes'] / 2**20:.0f} MiB, "
                    f"peak RSS +{measured['peak_growth_mb']:.0f} MB",
                    flush=True,
                )
    for name, runs in results.items():
        label = f"baseline {args.baseline}" if name == "baseline" else "today"
        first = statistics.median(run["first_s"] for run in runs) * 1000
        total = statistics.median(run["total_s"] for run in runs)
        growth = statistics.median(run["peak_growth_mb"] for run in runs)
        print(f"{label}: first byte {first:.1f} ms, last byte {total:.2f} s, peak RSS +{growth:.0f} MB (medians)")


if __name__ == "__main__":
    main()
