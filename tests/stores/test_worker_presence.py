"""Live workers in a real Redis: listed while they say they are alive, dropped when silent or stopped,
with only the public part of their records."""

from __future__ import annotations

import time

import redis

from common import keyspace
from common.workers import LIVE_WITHIN_SECONDS, WorkerState, forget, live_workers, mark_alive
from worker.presence import PresenceLoop

CHECKED = {
    "engine": "openvino",
    "device": "cpu",
    "precision": "fp32",
    "precision_reason": "fp32: bf16 failed: mean |Δα| 9.70e-03",
    "precision_check_mean": "9.700e-03",
    "precision_check_p99": "4.600e-02",
    "precision_check_bound": "1.000e-02",
    "precision_check_passed": "false",
    "model_path": "/srv/models/modnet.ckpt",
    "pid": "4242",
}


def record(client: redis.Redis, name: str, fields: dict[str, str]) -> None:
    client.hset(keyspace.WORKER.format(name=name), mapping=fields)


def test_a_worker_is_listed_with_its_precision_decision_and_nothing_internal(client: redis.Redis) -> None:
    record(client, "host-a:1", CHECKED)
    mark_alive(client, "host-a:1")
    (state,) = live_workers(client)
    assert state.engine == "openvino" and state.precision == "fp32" and state.device == "cpu"
    assert state.precision_check is not None and state.precision_check.passed is False
    assert (state.precision_check.mean, state.precision_check.p99, state.precision_check.bound) == (
        9.7e-3,
        4.6e-2,
        1e-2,
    )
    public = state.model_dump_json()
    assert "host-a" not in public and "/srv/models" not in public and "4242" not in public


def test_a_worker_without_a_self_check_has_none(client: redis.Redis) -> None:
    fields = {key: value for key, value in CHECKED.items() if not key.startswith("precision_check")}
    record(client, "host-b:1", {**fields, "precision_reason": "fp32: reduced precision off"})
    mark_alive(client, "host-b:1")
    (state,) = live_workers(client)
    assert state.precision_check is None and state.precision_reason == "fp32: reduced precision off"


def test_silent_stopped_and_unrecorded_workers_are_not_listed(client: redis.Redis) -> None:
    now = time.time()
    for name in ("silent", "stopped", "alive"):
        record(client, name, {**CHECKED, "engine": name})
    mark_alive(client, "silent", now=now - LIVE_WITHIN_SECONDS - 1)
    mark_alive(client, "stopped", now=now)
    mark_alive(client, "alive", now=now - LIVE_WITHIN_SECONDS / 2)
    mark_alive(client, "no-record", now=now)
    forget(client, "stopped")
    assert [state.engine for state in live_workers(client, now=now)] == ["alive"]
    assert client.zscore(keyspace.WORKERS_SEEN, "silent") is None  # pruned by the heartbeats, so the set does not grow


def test_the_heartbeat_lists_the_worker_and_keeps_its_record(client: redis.Redis) -> None:
    key = keyspace.WORKER.format(name="host-c:7")
    record(client, "host-c:7", CHECKED)
    client.expire(key, 5)
    loop = PresenceLoop(client, "host-c:7", record_ttl_seconds=3600)
    loop.start()
    try:
        assert [state.engine for state in live_workers(client)] == ["openvino"]
        assert client.ttl(key) > 5  # renewed: a long-running worker's record does not expire under it
    finally:
        loop.stop()
    assert live_workers(client) == []


def test_the_public_model_reads_a_record_back() -> None:
    state = WorkerState.from_record(CHECKED)
    assert WorkerState.model_validate_json(state.model_dump_json()) == state
