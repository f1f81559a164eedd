"""A storage outage of minutes loses nothing: jobs in flight when S3 goes away all succeed once it is
back, with the default retry deadline (BACKDROP_TASK_RETRY_DEADLINE_SECONDS, 900 s) and backoff.

    flock /tmp/bench.lock python bench/bench_outage.py [--jobs 8] [--outage 180]

Starts Redis, a moto S3 server behind a TCP proxy that can be cut (the one of
tests/integration/test_storage_outage.py), one worker and the API. First the baseline: ``--jobs``
jobs with the storage up, timed from the first submission to the last success. Then the same number
of jobs, with the proxy cut (connections refused, open ones closed) right after they are submitted,
for ``--outage`` seconds (the worker is paused while they are submitted, so that none has finished
at the cut). Prints how many were pending at the cut, their outcome, their attempts,
and how long after the storage came back the last one succeeded, against the baseline's time.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_core import _default_weights  # noqa: E402
from tests.integration.stack import Stack, stack_environment  # noqa: E402
from tests.integration.test_service import rgba_photo  # noqa: E402
from tests.integration.test_storage_outage import ToggleProxy  # noqa: E402
from worker.embedded import BIN_DIR, ManagedProcess, free_port, start_redis, wait_until  # noqa: E402

TERMINAL = ("succeeded", "failed", "canceled")


def start_moto(root: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    argv = [str(BIN_DIR / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    moto = ManagedProcess("moto", argv, env=dict(os.environ), log_path=root / "moto.log", cwd=root)
    endpoint = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(endpoint + "/", timeout=1).close()
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    wait_until(lambda: answers() or not moto.alive(), 60, "moto_server")
    return moto, endpoint


def statuses(stack: Stack, ids: list[str]) -> list[dict]:
    return [stack.poll(job_id).json() for job_id in ids]


def run_jobs(stack: Stack, seed: int, count: int) -> list[str]:
    ids = []
    for index in range(count):
        answer = stack.submit(rgba_photo(seed + index, size=(1200, 1600)))
        assert answer.status == 202, answer.body
        ids.append(answer.json()["id"])
    return ids


def wait_all(stack: Stack, ids: list[str], timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = statuses(stack, ids)
        if all(job["status"] in TERMINAL for job in jobs) or time.monotonic() > deadline:
            return jobs
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--outage", type=float, default=180.0, help="seconds the storage is cut")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="backdrop-bench-outage-"))
    redis_port = free_port()
    redis_process = start_redis(root / "redis", redis_port, persist=True, log_path=root / "redis.log")
    moto, endpoint = start_moto(root)
    proxy = ToggleProxy(endpoint)
    env = stack_environment(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        storage="s3",
        data_dir=root / "data",
        weights=_default_weights(),
        s3_endpoint=proxy.url,
        bucket="bench-outage",
    )
    # The service's own defaults for everything that decides the outcome: the retry deadline (900 s),
    # the backoff (at most 30 s), the storage call bounds and the visibility timeout.
    for name in ("BACKDROP_VISIBILITY_TIMEOUT", "BACKDROP_TASK_RETRY_DEADLINE_SECONDS"):
        env.pop(name, None)
    env["BACKDROP_S3_PUBLIC_ENDPOINT_URL"] = proxy.url
    stack = Stack(env, root)
    try:
        stack.start_worker(concurrency=0)
        stack.start_api()
        print(f"retry deadline {stack.settings.task_retry_deadline_seconds:.0f} s, "
              f"backoff at most {stack.settings.task_retry_backoff_max_seconds:.0f} s, "
              f"{args.jobs} jobs of 1200x1600, worker at its default concurrency")  # fmt: skip

        start = time.monotonic()
        baseline_ids = run_jobs(stack, 100, args.jobs)
        baseline = wait_all(stack, baseline_ids, 300)
        baseline_seconds = time.monotonic() - start
        print(f"baseline, storage up: {[j['status'] for j in baseline].count('succeeded')}/{args.jobs} "
              f"succeeded in {baseline_seconds:.1f} s")  # fmt: skip

        # The worker is paused while the jobs are submitted, so that all of them are in flight at the cut.
        worker = stack.workers[0]
        worker.send_signal(signal.SIGSTOP)
        ids = run_jobs(stack, 200, args.jobs)
        proxy.down()
        cut = time.monotonic()
        worker.send_signal(signal.SIGCONT)
        pending = sum(job["status"] not in TERMINAL for job in statuses(stack, ids))
        print(f"storage cut with {pending}/{args.jobs} jobs pending; restored after {args.outage:.0f} s")
        while time.monotonic() - cut < args.outage:
            time.sleep(1)
        during = statuses(stack, ids)
        proxy.up()
        restored = time.monotonic()
        jobs = wait_all(stack, ids, stack.settings.task_retry_deadline_seconds)
        last = time.monotonic() - restored
        outcome = {status: [j["status"] for j in jobs].count(status) for status in TERMINAL}
        print(f"at the end of the outage: {sorted(j['status'] for j in during)}")
        print(f"after the outage: {outcome}, attempts {sorted(j['attempts'] for j in jobs)}")
        errors = sorted((j.get("error") or {}).get("code", "") for j in jobs if j["status"] == "failed")
        if errors:
            print(f"failed with: {errors}")
        ratio = last / baseline_seconds
        print(f"the last job succeeded {last:.1f} s after the storage came back "
              f"({ratio:.2f} x the baseline's {baseline_seconds:.1f} s for all {args.jobs})")  # fmt: skip
    finally:
        stack.stop()
        proxy.down()
        moto.stop()
        redis_process.stop()


if __name__ == "__main__":
    main()
