"""``backdrop serve`` as a newcomer meets it: a port already taken, and what it says it loaded."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from worker.cli.serve import api_ready, healthz_is_backdrop
from worker.embedded import ManagedProcess, free_port, wait_until

BACKDROP = Path(sys.executable).parent / "backdrop"


def serve_env(model_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BACKDROP_")}
    return {
        **env,
        "BACKDROP_MODEL_PATH": str(model_path),
        "BACKDROP_TORCH_THREADS": "1",
        "BACKDROP_INFERENCE_REF_SIZE": "128",
        "BACKDROP_DEVICE": "cpu",
    }


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _answering(body: bytes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def other_server() -> Iterator[tuple[ThreadingHTTPServer, str]]:
    """Another program's HTTP server on loopback, answering 200 to every GET."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _answering(b"{}"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_taken_port_is_refused_before_anything_starts(
    tmp_path: Path, taken_port: int, official_format_checkpoint: Path
) -> None:
    data = tmp_path / "data"
    argv = [str(BACKDROP), "serve", "--port", str(taken_port), "--data-dir", str(data)]
    result = subprocess.run(
        argv, env=serve_env(official_format_checkpoint), capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 1, result.stderr
    assert f"port {taken_port} on 127.0.0.1 is already in use" in result.stderr
    assert "backdrop serve --port " in result.stderr
    assert "Backdrop is running" not in result.stderr
    assert "Address already in use" not in result.stderr
    assert not data.exists(), "nothing may start (no Redis, no logs) when the port is taken"


def test_the_readiness_probe_is_not_fooled_by_another_server(
    tmp_path: Path, other_server: tuple[ThreadingHTTPServer, str]
) -> None:
    server, url = other_server
    assert not healthz_is_backdrop(url)  # 200, but not Backdrop's answer
    server.RequestHandlerClass = _answering(json.dumps({"status": "ok"}).encode())
    assert healthz_is_backdrop(url)

    # Even with Backdrop's answer, a process that never listened itself is not our API.
    idle = ManagedProcess(
        "api",
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        env=os.environ,
        log_path=tmp_path / "api.log",
        cwd=tmp_path,
    )
    try:
        assert idle.alive()
        assert not api_ready(idle, url)
    finally:
        idle.stop(timeout=10)
    assert not api_ready(idle, url)


def serve_until(data_dir: Path, model_path: Path, output: Path, line: str) -> subprocess.Popen[bytes]:
    """``backdrop serve`` on a free port, its output in ``output``, once it has printed ``line`` (or exited)."""
    argv = [str(BACKDROP), "serve", "--port", str(free_port()), "--data-dir", str(data_dir)]
    with open(output, "wb") as log:
        process = subprocess.Popen(argv, env=serve_env(model_path), stdout=log, stderr=log)
    try:
        wait_until(lambda: line in output.read_text() or process.poll() is not None, 180, "backdrop serve")
    except TimeoutError:
        process.kill()
        process.wait(30)
        raise
    return process


@pytest.mark.slow
def test_serve_says_which_checkpoint_and_device_it_loaded(tmp_path: Path, official_format_checkpoint: Path) -> None:
    output = tmp_path / "serve.out"
    process = serve_until(tmp_path / "data", official_format_checkpoint, output, "Backdrop is running")
    try:
        assert process.poll() is None, output.read_text()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(120)
    shown = output.read_text()
    assert f"the worker loaded MODNet from {official_format_checkpoint} on cpu (fp32)" in shown
    assert shown.index("the worker loaded MODNet") < shown.index("Backdrop is running")


def _processes_with(variable: str) -> list[int]:
    """The processes whose environment holds ``variable`` (NAME=value): this test's own children."""
    found = []
    needle = variable.encode() + b"\0"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


@pytest.mark.slow
def test_ctrl_c_while_starting_stops_everything_it_started(tmp_path: Path, official_format_checkpoint: Path) -> None:
    """Ctrl-C while the worker is still loading: serve stops what it has started and exits 0, as it
    does once running, instead of dying on the interrupt mid-start."""
    data_dir = tmp_path / "data"
    output = tmp_path / "serve.out"
    process = serve_until(data_dir, official_format_checkpoint, output, "starting the worker")
    try:
        assert process.poll() is None, output.read_text()
        process.send_signal(signal.SIGINT)
        assert process.wait(120) == 0, output.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    shown = output.read_text()
    assert "stopping..." in shown and "Aborted" not in shown, shown
    assert "Backdrop is running" not in shown
    # Its Redis and its worker (children in sessions of their own) are gone too.
    redis_port = int(re.search(r"started Redis on 127\.0\.0\.1:(\d+)", shown).group(1))  # type: ignore[union-attr]
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", redis_port)) != 0, "its Redis still listens"
    leftover = _processes_with(f"BACKDROP_DATA_DIR={data_dir.resolve()}")
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert leftover == []
