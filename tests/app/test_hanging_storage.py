"""A storage that accepts connections and never answers holds a request for a bounded time, and after a
few such failures the API answers 503 at once instead of tying up another request thread."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.app import create_app
from common.settings import Settings
from tests.app.conftest import png


class SilentServer:
    """Accepts TCP connections on loopback and never sends a byte; counts the connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_a_hanging_storage_trips_the_breaker(redis_url: str, tmp_path: Path, silent: SilentServer, token: str) -> None:
    settings = Settings(
        redis_url=redis_url,
        data_dir=tmp_path,
        storage="s3",
        s3_endpoint_url=silent.url,
        s3_access_key_id="k",
        s3_secret_access_key="s",
        storage_read_timeout_seconds=0.5,
        storage_connect_timeout_seconds=0.5,
        storage_max_attempts=1,
        storage_breaker_failures=2,
        storage_breaker_reset_seconds=600,
    )
    client = create_app(settings).test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def post() -> tuple[int, str]:
        data = {"image": (io.BytesIO(png()), "p.png")}
        response = client.post("/v1/jobs", data=data, headers=headers, content_type="multipart/form-data")
        return response.status_code, response.json["error"]["code"]

    assert [post(), post()] == [(503, "storage_unavailable")] * 2
    reached = len(silent.accepted)
    assert reached >= 2
    assert [post() for _ in range(5)] == [(503, "storage_unavailable")] * 5
    assert len(silent.accepted) == reached  # the open breaker sent nothing to the storage
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["storage"] == "unreachable"
    assert len(silent.accepted) == reached
