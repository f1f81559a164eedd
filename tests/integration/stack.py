"""A running service for tests: worker and API processes over real Redis and storage, and an HTTP client."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from common import keyspace
from common.api_keys import ApiKeyStore
from common.client import encode_multipart
from common.settings import Settings
from common.storage import Storage, storage_from_settings
from worker.embedded import ManagedProcess, api_argv, free_port, wait_until, worker_argv

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120


def stack_environment(
    *, redis_url: str, storage: str, data_dir: Path, weights: Path, s3_endpoint: str, bucket: str
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BACKDROP_")}
    env.update(
        BACKDROP_REDIS_URL=redis_url,
        BACKDROP_STORAGE=storage,
        BACKDROP_DATA_DIR=str(data_dir),
        BACKDROP_MODEL_PATH=str(weights),
        BACKDROP_DEVICE="cpu",
        BACKDROP_TORCH_THREADS="1",
        # Small network inputs keep the tests fast; the pipeline is the same at any size.
        BACKDROP_INFERENCE_REF_SIZE="128",
        BACKDROP_INFERENCE_MAX_SIDE="256",
        BACKDROP_MAX_BATCH_SIZE="8",
        BACKDROP_MAX_DELAY_MS="300",
        BACKDROP_VISIBILITY_TIMEOUT="6",
        BACKDROP_S3_ENDPOINT_URL=s3_endpoint,
        BACKDROP_S3_PUBLIC_ENDPOINT_URL=s3_endpoint.replace("127.0.0.1", "localhost"),
        BACKDROP_S3_BUCKET=bucket,
        BACKDROP_S3_ACCESS_KEY_ID="testing-access-key",
        BACKDROP_S3_SECRET_ACCESS_KEY="testing-secret-key",
        BACKDROP_S3_CREATE_BUCKET="true",
    )
    return env


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body (the client's encoder) and its Content-Type."""
    return encode_multipart(list(fields.items()), [(name, filename, data) for name, (filename, data) in files.items()])


def _headers(message: Any) -> dict[str, str]:
    """Header names in lower case (HTTP names are case-insensitive; servers differ)."""
    return {name.lower(): value for name, value in message.items()}


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> HttpResponse:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return HttpResponse(response.status, _headers(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return HttpResponse(exc.code, _headers(exc.headers), exc.read())


class Stack:
    """Worker(s) and an API sharing one Redis database and one storage."""

    def __init__(self, env: dict[str, str], root: Path) -> None:
        self.env = env
        self.root = root
        self.settings = Settings(
            **{
                key.removeprefix("BACKDROP_").lower(): value
                for key, value in env.items()
                if key.startswith("BACKDROP_")
            }
        )
        self.redis = redis.Redis.from_url(env["BACKDROP_REDIS_URL"], decode_responses=True)
        self.workers: list[ManagedProcess] = []
        self.api: ManagedProcess | None = None
        self.api_url = ""
        self.token: str | None = None  # the API key the helpers below send
        self._storage: Storage | None = None

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            self._storage = storage_from_settings(self.settings)
        return self._storage

    # --- processes --------------------------------------------------------------------------------

    def start_worker(self, *, concurrency: int = 16, wait: bool = True) -> ManagedProcess:
        """A worker process; ``concurrency`` 0 keeps the worker's own default."""
        for key in self.redis.scan_iter(keyspace.WORKER.format(name="*")):
            self.redis.delete(key)
        index = len(self.workers)
        worker = ManagedProcess(
            f"worker{index}",
            worker_argv(concurrency=concurrency, hostname=f"worker{index}-{uuid.uuid4().hex[:6]}@%h"),
            env=self.env,
            log_path=self.root / f"worker{index}.log",
            cwd=REPO_ROOT,
        )
        self.workers.append(worker)
        if wait:
            wait_until(lambda: self.worker_ready() or not worker.alive(), START_TIMEOUT, "the worker to load MODNet")
            assert worker.alive(), worker.log_tail()
        return worker

    def worker_ready(self) -> bool:
        return any(True for _ in self.redis.scan_iter(keyspace.WORKER.format(name="*")))

    def forward_passes(self) -> int:
        return sum(
            int(self.redis.hget(key, "forward_passes") or 0)
            for key in self.redis.scan_iter(keyspace.WORKER.format(name="*"))
        )

    def new_key(self, name: str = "tests") -> str:
        return ApiKeyStore(self.redis).create(name).token

    def start_api(self, **overrides: str) -> str:
        """The API under gunicorn; with authentication required, a key is created for the helpers."""
        if self.token is None and {**self.env, **overrides}.get("BACKDROP_AUTH", "required") == "required":
            self.token = self.new_key()
        port = free_port()
        env = {**self.env, "BACKDROP_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", **overrides}
        self.env["BACKDROP_PUBLIC_BASE_URL"] = env["BACKDROP_PUBLIC_BASE_URL"]
        self.api = ManagedProcess(
            "api", api_argv("127.0.0.1", port), env=env, log_path=self.root / "api.log", cwd=REPO_ROOT
        )
        self.api_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: self._api_up() or not self.api.alive(), START_TIMEOUT, "the API")
        assert self.api.alive(), self.api.log_tail()
        return self.api_url

    def _api_up(self) -> bool:
        try:
            return http("GET", f"{self.api_url}/healthz").status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop(timeout=10)
        for worker in self.workers:
            worker.stop(timeout=60)
        if self._storage is not None:
            self._storage.close()
        self.redis.close()

    # --- the HTTP API ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        token: str | None = "",
    ) -> HttpResponse:
        """A request to the API with this stack's key (``token=None`` sends none, a string sends that one)."""
        token = self.token if token == "" else token
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return http(method, f"{self.api_url}{path}", body, {**auth, **(headers or {})})

    def submit(
        self,
        image: bytes,
        filename: str = "photo.png",
        *,
        headers: dict[str, str] | None = None,
        token: str | None = "",
        **fields: str,
    ) -> HttpResponse:
        body, content_type = multipart(fields, {"image": (filename, image)})
        return self.request("POST", "/v1/jobs", body, {"Content-Type": content_type, **(headers or {})}, token=token)

    def poll(self, job_id: str, *, token: str | None = "") -> HttpResponse:
        return self.request("GET", f"/v1/jobs/{job_id}", token=token)

    def wait_for(self, job_id: str, timeout: float = 120, statuses: tuple[str, ...] = ("succeeded", "failed")) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.poll(job_id).json()
            if job["status"] in statuses:
                return job
            if time.monotonic() > deadline:
                logs = "\n".join(w.log_tail() for w in self.workers)
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s\n{logs}")
            time.sleep(0.1)

    def download(self, url: str) -> HttpResponse:
        return http("GET", url)

    def kill_workers(self, sig: int = signal.SIGKILL) -> None:
        for worker in self.workers:
            worker.send_signal(sig)
