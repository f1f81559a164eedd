"""Readiness tells a probe whether the API can take jobs, without telling anyone its internals."""

from __future__ import annotations

from pathlib import Path

import redis

from api.app import create_app
from common import keyspace
from common.settings import Settings
from common.workers import mark_alive


def test_ready_when_redis_and_storage_answer(settings: Settings) -> None:
    response = create_app(settings).test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ready", "checks": {"redis": "ok", "storage": "ok"}, "workers": []}


def test_live_workers_are_listed_with_their_precision_but_no_host_process_or_path(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    record = {
        "engine": "torch",
        "device": "cuda:0",
        "precision": "fp16",
        "precision_reason": "fp16 passed",
        "precision_check_mean": "1.000e-04",
        "precision_check_p99": "2.000e-03",
        "precision_check_bound": "1.000e-02",
        "precision_check_passed": "true",
        "model_path": "/models/secret-dir/modnet.ckpt",
        "pid": "31337",
    }
    client.hset(keyspace.WORKER.format(name="gpu-node-7:99"), mapping=record)
    mark_alive(client, "gpu-node-7:99")
    response = create_app(settings).test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["workers"] == [
        {
            "engine": "torch",
            "device": "cuda:0",
            "precision": "fp16",
            "precision_reason": "fp16 passed",
            "precision_check": {"passed": True, "mean": 1e-4, "p99": 2e-3, "bound": 1e-2},
        }
    ]
    assert "gpu-node-7" not in response.text and "secret-dir" not in response.text and "31337" not in response.text


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
    assert response.json["workers"] == []
    assert "127.0.0.1" not in response.text and str(tmp_path) not in response.text
