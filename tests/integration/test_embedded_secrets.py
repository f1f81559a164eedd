"""The embedded service keeps its secrets to itself: a password on its Redis, private files, no signed
links in the access log, and no anonymous API on a network address unless told so."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from PIL import Image

from tests.integration.stack import Stack
from worker.embedded import ManagedProcess, embedded_redis_password, free_port, start_redis

BACKDROP = Path(sys.executable).parent / "backdrop"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_embedded_redis_needs_its_password_and_its_files_are_private(tmp_path: Path) -> None:
    password = embedded_redis_password(tmp_path)
    assert password == embedded_redis_password(tmp_path) and len(password) >= 32  # kept, not remade
    assert _mode(tmp_path / "redis.password") == 0o600
    port = free_port()
    process = start_redis(tmp_path / "redis", port, persist=True, log_path=tmp_path / "redis.log", password=password)
    try:
        anonymous = redis.Redis(host="127.0.0.1", port=port)
        with pytest.raises(redis.AuthenticationError):
            anonymous.set("backdrop:webhook-secret", "whsec_x")
        anonymous.close()
        client = redis.Redis(host="127.0.0.1", port=port, password=password)
        client.set("backdrop:webhook-secret", "whsec_x")
        client.close()
        aof = [path for path in (tmp_path / "redis").rglob("*") if path.is_file()]
        assert aof and all(_mode(path) & 0o077 == 0 for path in aof), [(p.name, oct(_mode(p))) for p in aof]
        assert _mode(tmp_path / "redis.log") & 0o077 == 0
    finally:
        process.stop()


def test_log_files_of_managed_processes_are_private(tmp_path: Path) -> None:
    process = ManagedProcess("echo", ["/bin/echo", "hello"], env=os.environ, log_path=tmp_path / "x.log", cwd=tmp_path)
    process.process.wait(10)
    process.stop()
    assert _mode(tmp_path / "x.log") == 0o600 and "hello" in (tmp_path / "x.log").read_text()


def test_the_access_log_has_no_signed_query_strings(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("local")
    stack.start_worker(concurrency=1)
    stack.start_api()
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 120, 200)).save(buffer, "PNG")
    job = stack.wait_for(stack.submit(buffer.getvalue()).json()["id"])
    url = job["results"]["composite"]["url"]
    assert "signature=" in url and stack.download(url).status == 200
    log = stack.api.log_of_this_run()
    assert "/v1/files/" in log and "signature=" not in log and "expires=" not in log
    long = stack.request("GET", "/v1/jobs/" + "a" * 6000)  # past 4096 characters, within gunicorn's line limit
    assert long.status == 414 and long.json()["error"]["code"] == "uri_too_long"


def test_serve_refuses_a_network_address_without_keys(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BACKDROP_")}
    argv = [str(BACKDROP), "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--data-dir", str(tmp_path)]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "--allow-anonymous" in result.stderr and "BACKDROP_AUTH=required" in result.stderr
    assert not (tmp_path / "redis").exists()
