"""Slow connections held while the API stays responsive: /healthz latency with N connections open that
send their header a byte a second, against the same API idle, interleaved in one run.

    flock /tmp/bench.lock python bench/bench_slow_clients.py [--counts 64,256,900] [--rounds 3] [--probes 40]

Starts its own Redis and the API as `backdrop serve` does (api/server.py: one gevent worker process);
no worker is needed for /healthz. For each count, each round opens the slow connections, measures
``--probes`` health checks (a new connection each), checks that the slow ones are still open, closes
them, then measures as many health checks idle. Prints the median and p95 latency of both and their
ratio. ``--threads-baseline`` adds gunicorn's thread workers (8 threads, the earlier configuration)
with 64 slow connections, where the health checks do not answer within the probe timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from worker.embedded import BIN_DIR, ManagedProcess, api_argv, free_port, start_redis, wait_until  # noqa: E402

HEADER = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: one-byte-a-second\r\n"
PROBE_TIMEOUT = 5.0


class Drip:
    """``count`` connections sending HEADER a byte a second (never its end), until closed."""

    def __init__(self, port: int, count: int) -> None:
        self.sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for byte in HEADER:
            for sock in self.sockets:
                with contextlib.suppress(OSError):  # closed by the server: its header deadline
                    sock.sendall(bytes([byte]))
            if self._stop.wait(1.0):
                return

    def still_open(self) -> int:
        count = 0
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                count += sock.recv(1) != b""
            except BlockingIOError:
                count += 1
            except OSError:
                pass
            finally:
                sock.setblocking(True)
        return count

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.sockets:
            sock.close()


def probe(port: int) -> float | None:
    """Seconds for one /healthz on a new connection; None when it got no 200 within PROBE_TIMEOUT."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        return time.perf_counter() - start if response.status == 200 else None
    except OSError:
        return None
    finally:
        connection.close()


def probes(port: int, count: int) -> list[float | None]:
    return [probe(port) for _ in range(count)]


def summary(values: list[float | None]) -> tuple[float, float, int]:
    """Median and p95 in ms of the answered probes, and how many got no answer."""
    answered = sorted(v * 1000 for v in values if v is not None)
    if not answered:
        return float("nan"), float("nan"), len(values)
    p95 = answered[min(len(answered) - 1, round(0.95 * (len(answered) - 1)))]
    return statistics.median(answered), p95, len(values) - len(answered)


def start_api(argv: list[str], env: dict[str, str], root: Path, port: int) -> ManagedProcess:
    api = ManagedProcess("api", argv, env=env, log_path=root / f"api-{port}.log", cwd=REPO)
    wait_until(lambda: probe(port) is not None or not api.alive(), 60, "the API")
    if not api.alive():
        raise RuntimeError(api.log_tail())
    return api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="64,256,900", help="slow connections held at once (at most 1000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--threads-baseline", action="store_true")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]

    root = Path(tempfile.mkdtemp(prefix="backdrop-bench-slow-"))
    redis_port = free_port()
    redis_process = start_redis(root / "redis", redis_port, persist=False, log_path=root / "redis.log")
    env = {key: value for key, value in os.environ.items() if not key.startswith("BACKDROP_")}
    env.update(
        BACKDROP_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        BACKDROP_STORAGE="local",
        BACKDROP_DATA_DIR=str(root / "data"),
        BACKDROP_AUTH="disabled",
        BACKDROP_LOG_LEVEL="WARNING",
    )
    processes = [redis_process]
    try:
        port = free_port()
        processes.append(start_api(api_argv("127.0.0.1", port), env, root, port))
        probes(port, 20)  # warm-up
        print(f"gevent worker (api/server.py), 1 process; {args.rounds} rounds x {args.probes} probes, interleaved")
        print("| slow connections | held at the end | idle p50 / p95 ms | slow p50 / p95 ms | p50 ratio | unanswered |")
        print("|---:|---:|---:|---:|---:|---:|")
        for count in counts:
            idle: list[float | None] = []
            slow: list[float | None] = []
            held = count
            for _ in range(args.rounds):
                drip = Drip(port, count)
                time.sleep(1.5)  # every connection has sent its first bytes
                slow += probes(port, args.probes)
                held = min(held, drip.still_open())
                drip.close()
                time.sleep(0.5)
                idle += probes(port, args.probes)
            i50, i95, _ = summary(idle)
            s50, s95, lost = summary(slow)
            print(f"| {count} | {held} | {i50:.2f} / {i95:.2f} | {s50:.2f} / {s95:.2f} | {s50 / i50:.2f} | {lost} |")
        if args.threads_baseline:
            threads_port = free_port()
            argv = [str(BIN_DIR / "gunicorn"), "--bind", f"127.0.0.1:{threads_port}", "--workers", "1",
                    "--threads", "8", "--no-control-socket", "api.app:create_app()"]  # fmt: skip
            processes.append(start_api(argv, env, root, threads_port))
            drip = Drip(threads_port, 64)
            time.sleep(1.5)
            lost = summary(probes(threads_port, 5))[2]
            drip.close()
            print(f"thread workers (8 threads), 64 slow connections: {lost} of 5 health checks unanswered "
                  f"within {PROBE_TIMEOUT:.0f} s")  # fmt: skip
    finally:
        for process in reversed(processes):
            process.stop(timeout=15)


if __name__ == "__main__":
    main()
