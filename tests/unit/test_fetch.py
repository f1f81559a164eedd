"""Tests of the checkpoint downloader against a real local HTTP server (no internet needed)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from common.errors import WeightsDownloadError
from common.settings import get_settings
from pretrained import fetch
from pretrained.fetch import Mirror, fetch_weights, is_valid_weights, missing_weights_message, sha256_of

REPO_ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = os.urandom(300_000)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
HTML_PAGE = b"<!DOCTYPE html><html><body>Google Drive can't scan this file for viruses.</body></html>"


class _Handler(BaseHTTPRequestHandler):
    """Serves one route per failure mode the downloader must handle."""

    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def _send(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/octet-stream",
        length: int | None = -1,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(len(body) if length == -1 else length))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.hits[path] += 1
        wrong = bytes(b ^ 0xFF for b in PAYLOAD[:16]) + PAYLOAD[16:]
        if path == "/good":
            self._send(200, PAYLOAD)
        elif path == "/good-nolength":
            self._send(200, PAYLOAD, length=None)
        elif path == "/wrong":
            self._send(200, wrong)
        elif path == "/long":
            self._send(200, PAYLOAD + b"extra", length=None)
        elif path == "/long-cl":
            self._send(200, PAYLOAD + b"extra")
        elif path == "/short":
            self._send(200, PAYLOAD[:1000], length=len(PAYLOAD))
        elif path == "/html":
            self._send(200, HTML_PAGE, content_type="text/html; charset=utf-8")
        elif path == "/html-disguised":
            self._send(200, HTML_PAGE, content_type="application/octet-stream", length=None)
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/good")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/slow":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            try:
                self.wfile.write(PAYLOAD[:100])
                self.server.release.wait(10)
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            self._send(404, b"not found", content_type="text/plain")


class _Server(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.release = threading.Event()


@dataclass
class LocalServer:
    server: _Server

    def mirror(self, route: str) -> Mirror:
        host, port = self.server.server_address[:2]
        return Mirror(route, f"http://{host}:{port}/{route}")

    def hits(self, route: str) -> int:
        with self.server.lock:
            return self.server.hits[f"/{route}"]


@pytest.fixture
def local() -> Iterator[LocalServer]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield LocalServer(server)
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def _fetch(dest: Path, mirrors: list[Mirror], **kwargs: object) -> Path:
    kwargs.setdefault("timeout", 5.0)
    kwargs.setdefault("progress", False)
    return fetch_weights(dest, mirrors=mirrors, expected_size=len(PAYLOAD), expected_sha256=PAYLOAD_SHA256, **kwargs)


# --- verification helpers -------------------------------------------------------------------


def test_sha256_of_matches_hashlib(tmp_path: Path) -> None:
    f = tmp_path / "w.ckpt"
    f.write_bytes(PAYLOAD)
    assert sha256_of(f) == PAYLOAD_SHA256


def test_is_valid_weights_checks_existence_size_and_hash(tmp_path: Path) -> None:
    kw = {"expected_size": len(PAYLOAD), "expected_sha256": PAYLOAD_SHA256}
    f = tmp_path / "w.ckpt"
    assert not is_valid_weights(f, **kw)
    assert not is_valid_weights(tmp_path, **kw)
    f.write_bytes(PAYLOAD[:-1])
    assert not is_valid_weights(f, **kw)
    f.write_bytes(b"\0" + PAYLOAD[1:])
    assert not is_valid_weights(f, **kw)
    f.write_bytes(PAYLOAD)
    assert is_valid_weights(f, **kw)
    assert is_valid_weights(f, expected_size=len(PAYLOAD), expected_sha256=PAYLOAD_SHA256.upper())


# --- downloading ----------------------------------------------------------------------------


def test_downloads_good_file_into_new_directory(local: LocalServer, tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "dir" / "w.ckpt"
    assert _fetch(dest, [local.mirror("good")]) == dest
    assert dest.read_bytes() == PAYLOAD
    assert os.listdir(dest.parent) == ["w.ckpt"]
    assert local.hits("good") == 1


def test_falls_back_past_404_and_wrong_hash(local: LocalServer, tmp_path: Path) -> None:
    dest = tmp_path / "w.ckpt"
    _fetch(dest, [local.mirror("missing"), local.mirror("wrong"), local.mirror("good"), local.mirror("long")])
    assert dest.read_bytes() == PAYLOAD
    assert [local.hits(r) for r in ("missing", "wrong", "good", "long")] == [1, 1, 1, 0]
    assert os.listdir(tmp_path) == ["w.ckpt"]


def test_all_mirrors_failing_raises_with_every_reason(local: LocalServer, tmp_path: Path) -> None:
    dest = tmp_path / "w.ckpt"
    routes = ["missing", "wrong", "long", "long-cl", "short", "html"]
    with pytest.raises(WeightsDownloadError) as info:
        _fetch(dest, [local.mirror(r) for r in routes])
    err = info.value
    assert err.code == "weights_download_failed"
    text = err.message
    assert "missing: HTTP 404" in text
    assert "wrong: sha256 mismatch" in text
    assert f"long: server sent more than {len(PAYLOAD)} bytes" in text
    assert f"long-cl: Content-Length {len(PAYLOAD) + 5} != {len(PAYLOAD)}" in text
    assert f"short: size 1000 != {len(PAYLOAD)}" in text
    assert "html: got an HTML page" in text
    # How to place the file by hand.
    assert str(dest) in text
    assert str(len(PAYLOAD)) in text
    assert PAYLOAD_SHA256 in text
    assert not dest.exists()
    assert os.listdir(tmp_path) == []


def test_follows_redirect(local: LocalServer, tmp_path: Path) -> None:
    dest = tmp_path / "w.ckpt"
    _fetch(dest, [local.mirror("redirect")])
    assert dest.read_bytes() == PAYLOAD
    assert (local.hits("redirect"), local.hits("good")) == (1, 1)


@pytest.mark.parametrize("route", ["html", "html-disguised"])
def test_refuses_html_page(local: LocalServer, tmp_path: Path, route: str) -> None:
    dest = tmp_path / "w.ckpt"
    with pytest.raises(WeightsDownloadError, match=rf"{route}: got an HTML page instead of the file"):
        _fetch(dest, [local.mirror(route)])
    assert os.listdir(tmp_path) == []


def test_short_body_without_length_is_a_size_mismatch(local: LocalServer, tmp_path: Path) -> None:
    dest = tmp_path / "w.ckpt"
    reason = rf"good-nolength: size {len(PAYLOAD)} != {len(PAYLOAD) + 1}"
    with pytest.raises(WeightsDownloadError, match=reason):
        fetch_weights(
            dest,
            mirrors=[local.mirror("good-nolength")],
            expected_size=len(PAYLOAD) + 1,
            expected_sha256=PAYLOAD_SHA256,
            progress=False,
            timeout=5.0,
        )
    assert os.listdir(tmp_path) == []


def test_timeout_moves_on_to_next_mirror(local: LocalServer, tmp_path: Path) -> None:
    dest = tmp_path / "w.ckpt"
    with pytest.raises(WeightsDownloadError, match=r"slow: timed out after 0.3s"):
        _fetch(dest, [local.mirror("slow")], timeout=0.3)
    assert os.listdir(tmp_path) == []
    _fetch(dest, [local.mirror("slow"), local.mirror("good")], timeout=0.3)
    assert dest.read_bytes() == PAYLOAD


def test_existing_valid_file_is_not_downloaded_again(local: LocalServer, tmp_path: Path) -> None:
    dest = tmp_path / "w.ckpt"
    dest.write_bytes(PAYLOAD)
    before = dest.stat().st_mtime_ns
    assert _fetch(dest, [local.mirror("good")]) == dest
    assert local.hits("good") == 0
    assert dest.stat().st_mtime_ns == before


def test_force_downloads_even_when_valid(local: LocalServer, tmp_path: Path) -> None:
    dest = tmp_path / "w.ckpt"
    dest.write_bytes(PAYLOAD)
    _fetch(dest, [local.mirror("good")], force=True)
    assert local.hits("good") == 1
    assert dest.read_bytes() == PAYLOAD


def test_existing_invalid_file_is_replaced(local: LocalServer, tmp_path: Path) -> None:
    dest = tmp_path / "w.ckpt"
    dest.write_bytes(b"partial download")
    _fetch(dest, [local.mirror("good")])
    assert dest.read_bytes() == PAYLOAD
    assert local.hits("good") == 1


def test_failed_download_leaves_existing_file_untouched(local: LocalServer, tmp_path: Path) -> None:
    dest = tmp_path / "w.ckpt"
    dest.write_bytes(b"user's own file")
    with pytest.raises(WeightsDownloadError):
        _fetch(dest, [local.mirror("wrong")])
    assert dest.read_bytes() == b"user's own file"
    assert os.listdir(tmp_path) == ["w.ckpt"]


def test_progress_bar_goes_to_stderr(local: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fetch(tmp_path / "w.ckpt", [local.mirror("good")], progress=True)
    captured = capsys.readouterr()
    assert "good" in captured.err
    assert captured.out == ""


# --- messages and command line --------------------------------------------------------------


def test_missing_weights_message_says_where_and_how() -> None:
    rel = Path("models") / "w.ckpt"
    text = missing_weights_message(rel)
    assert str(rel) in text
    assert str(rel.resolve()) in text
    assert "BACKDROP_MODEL_PATH" in text
    assert "`backdrop weights fetch`" in text
    assert "python -m pretrained.fetch" in text


@pytest.fixture
def local_defaults(local: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    """Point the module's built-in mirrors and expected values at the local server."""
    monkeypatch.setattr(fetch, "MIRRORS", (local.mirror("missing"), local.mirror("good")))
    monkeypatch.setattr(fetch, "EXPECTED_SIZE", len(PAYLOAD))
    monkeypatch.setattr(fetch, "EXPECTED_SHA256", PAYLOAD_SHA256)
    return local


def test_main_downloads_and_returns_zero(
    local_defaults: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "w.ckpt"
    assert fetch.main(["--dest", str(dest), "--no-progress"]) == 0
    assert dest.read_bytes() == PAYLOAD
    assert str(dest) in capsys.readouterr().out
    assert fetch.main(["--dest", str(dest), "--no-progress"]) == 0
    assert local_defaults.hits("good") == 1
    assert fetch.main(["--dest", str(dest), "--no-progress", "--force"]) == 0
    assert local_defaults.hits("good") == 2


def test_main_reports_failure_and_returns_one(
    local_defaults: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(fetch, "MIRRORS", (local_defaults.mirror("missing"), local_defaults.mirror("html")))
    dest = tmp_path / "w.ckpt"
    assert fetch.main(["--dest", str(dest), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "missing: HTTP 404" in err
    assert "html: got an HTML page" in err
    assert not dest.exists()


def test_main_defaults_to_configured_model_path(
    local_defaults: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "configured" / "w.ckpt"
    monkeypatch.setenv("BACKDROP_MODEL_PATH", str(dest))
    get_settings.cache_clear()
    try:
        assert fetch.main(["--no-progress"]) == 0
    finally:
        get_settings.cache_clear()
    assert dest.read_bytes() == PAYLOAD


def test_importing_fetch_pulls_in_neither_torch_nor_flask() -> None:
    code = "import sys, pretrained.fetch; print(sorted({'torch', 'flask'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
