"""``backdrop serve``: the whole service on one machine, no cloud account needed.

Redis (``BACKDROP_REDIS_URL`` when set and reachable, else an embedded redis-server with an
append-only file under the data dir), one worker, the API; local storage under the data dir.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

import click
import redis

from common import keyspace
from common.settings import get_settings
from pretrained.fetch import missing_weights_message
from worker.embedded import (
    ManagedProcess,
    api_argv,
    free_port,
    redis_reachable,
    start_redis,
    wait_until,
    worker_argv,
)

WORKER_START_TIMEOUT = 180


def _api_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _worker_ready(redis_url: str) -> bool:
    client = redis.Redis.from_url(redis_url)
    try:
        return any(True for _ in client.scan_iter(keyspace.WORKER.format(name="*")))
    finally:
        client.close()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API listens on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port of the API.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Default: BACKDROP_DATA_DIR.")
def serve(host: str, port: int, data_dir: Path | None) -> None:
    """Run Redis, a worker and the API until Ctrl-C."""
    settings = get_settings()
    data_dir = (data_dir or settings.data_dir).resolve()
    if not Path(settings.model_path).is_file():
        raise click.ClickException(missing_weights_message(settings.model_path))
    logs = data_dir / "logs"
    public_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    env = dict(os.environ)
    env["BACKDROP_DATA_DIR"] = str(data_dir)
    env["BACKDROP_MODEL_PATH"] = str(Path(settings.model_path).resolve())
    env.setdefault("BACKDROP_PUBLIC_BASE_URL", public_url)
    env.setdefault("BACKDROP_STORAGE", "local")
    # One user on one machine: no API keys unless asked for (BACKDROP_AUTH=required).
    env.setdefault("BACKDROP_AUTH", "disabled")

    children: list[ManagedProcess] = []
    explicit_redis = "redis_url" in settings.model_fields_set
    try:
        if explicit_redis and redis_reachable(settings.redis_url):
            redis_url = settings.redis_url
            click.echo(f"using Redis at {redis_url}", err=True)
        else:
            redis_port = free_port()
            children.append(start_redis(data_dir / "redis", redis_port, persist=True, log_path=logs / "redis.log"))
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            click.echo(f"started Redis on 127.0.0.1:{redis_port} (append-only file in {data_dir / 'redis'})", err=True)
        env["BACKDROP_REDIS_URL"] = redis_url

        worker = ManagedProcess("worker", worker_argv(), env=env, log_path=logs / "worker.log", cwd=Path.cwd())
        children.append(worker)
        click.echo("starting the worker (loading MODNet)...", err=True)
        wait_until(lambda: _worker_ready(redis_url) or not worker.alive(), WORKER_START_TIMEOUT, "the worker")
        if not worker.alive():
            raise click.ClickException(f"the worker exited at start:\n{worker.log_tail()}")

        api = ManagedProcess("api", api_argv(host, port), env=env, log_path=logs / "api.log", cwd=Path.cwd())
        children.append(api)
        wait_until(lambda: _api_healthy(public_url) or not api.alive(), 60, "the API")
        if not api.alive():
            raise click.ClickException(f"the API exited at start:\n{api.log_tail()}")

        click.echo(
            f"Backdrop is running at {public_url} (logs in {logs}); Ctrl-C stops it.\n"
            f"  demo page:  {public_url}/\n"
            f"  API docs:   {public_url}/docs  ({public_url}/openapi.json)\n"
            f"  from curl:  curl -F image=@photo.jpg -F background=blue {public_url}/v1/jobs",
            err=True,
        )
        _wait_for_stop(children)
    finally:
        _stop_all(children)


def _wait_for_stop(children: list[ManagedProcess]) -> None:
    stop = {"requested": False}

    def request_stop(signum: int, _frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while not stop["requested"]:
        for child in children:
            if not child.alive():
                click.echo(f"{child.name} exited unexpectedly:\n{child.log_tail()}", err=True)
                sys.exit(1)
        time.sleep(0.2)
    click.echo("stopping...", err=True)


def _stop_all(children: list[ManagedProcess]) -> None:
    # API first (no new jobs), then the worker (SIGTERM: it finishes its running batch), Redis last.
    for child in reversed(children):
        child.stop(timeout=90 if child.name == "worker" else 15)
