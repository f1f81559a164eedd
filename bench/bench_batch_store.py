"""Time to accept a multipart batch into S3, per photo: today's photos stored several at a time against
a baseline commit's one after another, interleaved (A B A B) in one run.

    flock /tmp/bench.lock python bench/bench_batch_store.py [--jobs 200] [--kib 100] [--rounds 5]
    flock /tmp/bench.lock python bench/bench_batch_store.py --keys --baseline e50413f [--rtt-ms 20]

Each round runs, for each tree (the baseline exported from git into a temporary directory), a process
of its own that builds the API's context over one Redis and one moto S3 server over HTTP (both started
here) and calls ``enqueue_batch`` with ``--jobs`` uploaded photos already spooled to disk, as
``POST /v1/batches`` does once the multipart body is read: each photo stored in the bucket, the
records, the batch's job list and the messages. Prints ms per photo for each and the ratio
baseline/today (median of the per-round ratios).

``--keys``: a JSON batch naming ``--jobs`` photos already in the bucket under the caller's upload
prefix instead (``POST /v1/batches`` with ``keys``): each key checked, then (since ``e50413f``) each
copied to its job's own key inside the bucket, the records, the job list and the messages.

moto answers on loopback using its own CPU, on the same 2 cores as the API, where a real endpoint's
round trip is mostly waiting. ``--rtt-ms`` puts a proxy in front of moto that holds every chunk of
bytes half that long in each direction (while later bytes keep flowing), as an S3 endpoint that many
milliseconds away would: ``--rtt-ms 0`` (no proxy) and, say, ``--rtt-ms 20`` bracket what a
deployment sees.
"""

from __future__ import annotations

import argparse
import queue
import socket
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402

from bench.bench_outage import start_moto  # noqa: E402
from bench.bench_upload_memory import ratio_rounds, run_in_tree, scratch_and_trees  # noqa: E402
from worker.embedded import ManagedProcess, free_port, start_redis  # noqa: E402

# The last commit that stored a multipart batch's photos one after another.
BASELINE_COMMIT = "218dece"

# Run in each tree's own directory, against that tree's modules.
CHILD = """
import io, json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, ".")
from api.context import ApiContext
from api.spool import SpooledPart
from api.submissions import JobRequest, Upload, enqueue_batch
from common.imaging import probe_image
from common.options import JobOptions
from common.settings import Settings

redis_url, endpoint, bucket, jobs, kib = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
by_key = sys.argv[6] == "keys"
settings = Settings(
    redis_url=redis_url,
    storage="s3",
    s3_endpoint_url=endpoint,
    s3_bucket=bucket,
    s3_access_key_id="bench-access-key",
    s3_secret_access_key="bench-secret-key",
    s3_create_bucket=True,
    data_dir=Path(tempfile.mkdtemp()),
    max_pending_jobs=2 * jobs + 100,
)
api = ApiContext.build(settings)
# A small PNG padded to its size: the API reads only the header, S3 stores the whole file.
from PIL import Image
buffer = io.BytesIO()
Image.new("RGB", (400, 300), (90, 120, 150)).save(buffer, "PNG")
png = buffer.getvalue() + bytes(kib * 1024)

# The photos in one spool file, as the API's request parser leaves them (api.spool).
spool = tempfile.TemporaryFile()
parts = []

def upload():
    part = SpooledPart(spool.fileno(), parts[-1].end if parts else 0)
    parts.append(part)
    part.write(png)
    part.seek(0)
    info = probe_image(part, max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)
    return Upload(part, len(png), info)

def keyed(owner, count):
    # The body of a JSON batch naming `count` photos stored under `owner`'s upload prefix.
    from api.schemas import BatchJson
    from common.storage import upload_key
    keys = [upload_key(owner, f"photo-{index}.png") for index in range(count)]
    for key in keys:
        api.storage.put(key, png, "image/png")
    return BatchJson.model_validate({"keys": keys})

if by_key:
    from api.submissions import batch_requests_from_json
    warm, body = keyed("warm-up", 8), keyed("bench", jobs)
    enqueue_batch(api, "warm-up", batch_requests_from_json(warm, api, "warm-up"))
    start = time.perf_counter()
    batch = enqueue_batch(api, "bench", batch_requests_from_json(body, api, "bench"))
else:
    enqueue_batch(api, "warm-up", [JobRequest(JobOptions(), upload()) for _ in range(8)])
    requests = [JobRequest(JobOptions(), upload()) for _ in range(jobs)]
    start = time.perf_counter()
    batch = enqueue_batch(api, "bench", requests)
seconds = time.perf_counter() - start
assert api.batches.counts(batch.id).queued == jobs
print(json.dumps({"ms_per_photo": seconds * 1000 / jobs}))
"""


class DelayProxy:
    """A TCP proxy on loopback to ``target_port`` that delivers every chunk ``one_way`` seconds after it
    arrived, in each direction: a round trip of twice that, with the bytes of a body still pipelined."""

    def __init__(self, target_port: int, one_way: float) -> None:
        self.target_port = target_port
        self.one_way = one_way
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        held: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def deliver() -> None:
            while True:
                due, data = held.get()
                time.sleep(max(0.0, due - time.monotonic()))
                try:
                    if not data:
                        sink.shutdown(socket.SHUT_WR)
                        return
                    sink.sendall(data)
                except OSError:
                    return

        threading.Thread(target=deliver, daemon=True).start()
        while True:
            try:
                data = source.recv(1 << 16)
            except OSError:
                data = b""
            held.put((time.monotonic() + self.one_way, data))
            if not data:
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--kib", type=int, default=100, help="size of each photo")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="round trip added in front of moto")
    parser.add_argument("--baseline", default=BASELINE_COMMIT, help="the commit to compare against")
    parser.add_argument("--keys", action="store_true", help="a JSON batch naming uploads already in the bucket")
    args = parser.parse_args()
    with scratch_and_trees(args.baseline) as (root, trees):
        port = free_port()
        server: ManagedProcess = start_redis(root / "redis", port, persist=False, log_path=root / "redis.log")
        moto, endpoint = start_moto(root)
        proxy = DelayProxy(int(endpoint.rsplit(":", 1)[1]), args.rtt_ms / 2000) if args.rtt_ms else None
        if proxy is not None:
            endpoint = f"http://127.0.0.1:{proxy.port}"
        try:
            url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis.from_url(url)

            def measure(name: str, tree: Path, round_index: int) -> float:
                client.flushdb()
                bucket = f"bench-{round_index}-{name}"  # a fresh bucket: moto keeps every object in memory
                argv = (url, endpoint, bucket, str(args.jobs), str(args.kib), "keys" if args.keys else "uploads")
                return float(run_in_tree(tree, CHILD, *argv)["ms_per_photo"])

            ratio_rounds(trees, args.rounds, measure, "ms/photo", args.baseline)
            client.close()
        finally:
            if proxy is not None:
                proxy.close()
            moto.stop()
            server.stop()


if __name__ == "__main__":
    main()
