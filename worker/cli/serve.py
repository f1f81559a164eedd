"""``backdrop serve``: the whole service on one machine, no cloud account needed.

Redis (``BACKDROP_REDIS_URL`` when set and reachable, else an embedded redis-server with an
append-only file under the data dir), one worker, the API; local storage under the data dir.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import signal
import socket
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
    embedded_redis_password,
    free_port,
    redis_reachable,
    redis_url_of,
    start_redis,
    wait_until,
    worker_argv,
)

WORKER_START_TIMEOUT = 180
API_START_TIMEOUT = 60
# What gunicorn logs once it holds the port itself, and what our /healthz answers.
GUNICORN_LISTENING = "Listening at: "
HEALTHZ_BODY = {"status": "ok"}
PORTS_TRIED_FOR_A_HINT = 20


def _bind_error(host: str, port: int) -> OSError | None:
    """Whether ``host:port`` can be listened on now: None, or the error binding it gives."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        return OSError(errno.EADDRNOTAVAIL, exc.strerror)
    with socket.socket(family, kind, proto) as sock:
        # As gunicorn does: a port left in TIME_WAIT by an earlier run is free, one with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return exc
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an address (or the name) of this machine's loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int) -> None:
    """Refuse to start (before anything runs) when the API could not listen on ``host:port``."""
    error = _bind_error(host, port)
    if error is None:
        return
    if error.errno == errno.EADDRINUSE:
        free = next(
            (p for p in range(port + 1, min(port + 1 + PORTS_TRIED_FOR_A_HINT, 65536)) if _bind_error(host, p) is None),
            None,
        )
        hint = f"backdrop serve --port {free}" if free else "backdrop serve --port PORT"
        raise click.ClickException(
            f"port {port} on {host} is already in use by another program. Stop that program, "
            f"or run Backdrop on another port: {hint}"
        )
    raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror or error} (see --host and --port)")


def healthz_is_backdrop(url: str) -> bool:
    """Whether ``url`` answers ``/healthz`` the way Backdrop's API does."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return response.status == 200 and json.loads(response.read(1024)) == HEALTHZ_BODY
    except (OSError, ValueError):
        return False


def api_ready(api: ManagedProcess, url: str) -> bool:
    """Our API answers: its gunicorn is alive and holds the port, and ``/healthz`` is Backdrop's."""
    return api.alive() and GUNICORN_LISTENING in api.log_of_this_run() and healthz_is_backdrop(url)


def loaded_worker(redis_url: str, pid: int) -> dict[str, str] | None:
    """What the worker process ``pid`` recorded once its model was loaded (checkpoint, device), or None."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for key in client.scan_iter(keyspace.WORKER.format(name="*")):
            record = client.hgetall(key)
            if record.get("pid") == str(pid):
                return record
        return None
    finally:
        client.close()


def describe_worker(record: dict[str, str]) -> str:
    """The line that says which checkpoint the worker loaded, on which device, in which precision."""
    return (
        f"the worker loaded MODNet from {record.get('model_path', '?')} "
        f"on {record.get('device', '?')} ({record.get('precision', '?')})"
    )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API listens on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port of the API.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Default: BACKDROP_DATA_DIR.")
@click.option(
    "--allow-anonymous",
    is_flag=True,
    help="With a --host other than loopback and no API keys: let anyone who reaches it use the API.",
)
def serve(host: str, port: int, data_dir: Path | None, allow_anonymous: bool) -> None:
    """Run Redis, a worker and the API until Ctrl-C."""
    settings = get_settings()
    data_dir = (data_dir or settings.data_dir).resolve()
    anonymous = os.environ.get("BACKDROP_AUTH", "disabled") == "disabled"
    if anonymous and not is_loopback(host) and not allow_anonymous:
        raise click.ClickException(
            f"--host {host} would let anyone who can reach it use the API without a key. Run with "
            "BACKDROP_AUTH=required (and create keys with `backdrop keys create`), or pass --allow-anonymous."
        )
    check_port(host, port)
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

    # From here Ctrl-C (or SIGTERM) means "stop": while starting too, what has started is stopped.
    stop = StopRequest.install()
    children: list[ManagedProcess] = []
    explicit_redis = "redis_url" in settings.model_fields_set
    try:
        if explicit_redis and redis_reachable(settings.redis_url):
            redis_url = settings.redis_url
            click.echo(f"using Redis at {redis_url}", err=True)
        else:
            redis_port = free_port()
            password = embedded_redis_password(data_dir)
            children.append(
                start_redis(
                    data_dir / "redis", redis_port, persist=True, log_path=logs / "redis.log", password=password
                )
            )
            redis_url = redis_url_of(redis_port, password)
            click.echo(f"started Redis on 127.0.0.1:{redis_port} (append-only file in {data_dir / 'redis'})", err=True)
        env["BACKDROP_REDIS_URL"] = redis_url

        worker = ManagedProcess("worker", worker_argv(), env=env, log_path=logs / "worker.log", cwd=Path.cwd())
        children.append(worker)
        click.echo("starting the worker (loading MODNet)...", err=True)
        loaded: dict[str, str] = {}

        def worker_loaded() -> bool:
            loaded.update(loaded_worker(redis_url, worker.process.pid) or {})
            return bool(loaded) or not worker.alive() or stop.requested

        wait_until(worker_loaded, WORKER_START_TIMEOUT, "the worker")
        if stop.requested:
            return
        if not worker.alive():
            raise click.ClickException(f"the worker exited at start:\n{worker.log_tail()}")
        click.echo(describe_worker(loaded), err=True)

        api = ManagedProcess("api", api_argv(host, port), env=env, log_path=logs / "api.log", cwd=Path.cwd())
        children.append(api)
        wait_until(
            lambda: api_ready(api, public_url) or not api.alive() or stop.requested, API_START_TIMEOUT, "the API"
        )
        if stop.requested:
            return
        if not api.alive():
            if _bind_error(host, port) is not None:
                raise click.ClickException(
                    f"port {port} on {host} was taken by another program while Backdrop started; "
                    f"stop it or choose another port with --port (API log: {api.log_path})"
                )
            raise click.ClickException(f"the API exited at start:\n{api.log_tail()}")

        click.echo(
            f"Backdrop is running at {public_url} (logs in {logs}); Ctrl-C stops it.\n"
            f"  demo page:  {public_url}/\n"
            f"  API docs:   {public_url}/docs  ({public_url}/openapi.json)\n"
            f"  from curl:  curl -F image=@photo.jpg -F background=blue {public_url}/v1/jobs",
            err=True,
        )
        _wait_for_stop(children, stop)
    finally:
        if stop.requested:
            click.echo("stopping...", err=True)
        _stop_all(children)


class StopRequest:
    """Set by SIGINT or SIGTERM once installed; a second signal while stopping changes nothing."""

    def __init__(self) -> None:
        self.requested = False

    @classmethod
    def install(cls) -> StopRequest:
        request = cls()
        signal.signal(signal.SIGINT, request._set)
        signal.signal(signal.SIGTERM, request._set)
        return request

    def _set(self, signum: int, _frame: object) -> None:
        self.requested = True


def _wait_for_stop(children: list[ManagedProcess], stop: StopRequest) -> None:
    while not stop.requested:
        for child in children:
            if not child.alive():
                click.echo(f"{child.name} exited unexpectedly:\n{child.log_tail()}", err=True)
                sys.exit(1)
        time.sleep(0.2)


def _stop_all(children: list[ManagedProcess]) -> None:
    # API first (no new jobs), then the worker (SIGTERM: it finishes its running batch), Redis last.
    for child in reversed(children):
        child.stop(timeout=90 if child.name == "worker" else 15)
