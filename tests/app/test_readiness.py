"""Readiness tells a probe whether the API can take jobs, without telling anyone its internals."""

from __future__ import annotations

from pathlib import Path

from api.app import create_app
from common.settings import Settings


def test_ready_when_redis_and_storage_answer(settings: Settings) -> None:
    response = create_app(settings).test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ready", "checks": {"redis": "ok", "storage": "ok"}}


def test_a_full_disk_is_not_ready(settings: Settings) -> None:
    full = settings.model_copy(update={"local_storage_min_free_bytes": 2**62})  # more than any disk has
    response = create_app(full).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"] == {"redis": "ok", "storage": "full"}


def test_failures_name_no_address_or_path(tmp_path: Path) -> None:
    dead = Settings(redis_url="redis://127.0.0.1:1/0", data_dir=tmp_path / "data", auth="disabled")
    app = create_app(dead)
    (tmp_path / "data" / "storage" / "objects").rmdir()
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"] == {"redis": "unreachable", "storage": "unreachable"}
    assert "127.0.0.1" not in response.text and str(tmp_path) not in response.text
