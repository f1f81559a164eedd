"""A storage that accepts connections and never answers holds a request for a bounded time, and after a
few such failures the API answers 503 at once instead of tying up another request thread."""

from __future__ import annotations

import io
from pathlib import Path

from api.app import create_app
from common.settings import Settings
from tests.app.conftest import png
from tests.silent_server import SilentServer


def test_a_hanging_storage_trips_the_breaker(
    redis_url: str, tmp_path: Path, silent_server: SilentServer, token: str
) -> None:
    settings = Settings(
        redis_url=redis_url,
        data_dir=tmp_path,
        storage="s3",
        s3_endpoint_url=silent_server.url,
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
    reached = len(silent_server.connections)
    assert reached >= 2
    assert [post() for _ in range(5)] == [(503, "storage_unavailable")] * 5
    assert len(silent_server.connections) == reached  # the open breaker sent nothing to the storage
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["storage"] == "unreachable"
    assert len(silent_server.connections) == reached
