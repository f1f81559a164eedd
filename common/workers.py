"""Which workers are alive and what runs their network: the public part of their Redis records.

A worker records itself once its model is loaded (``keyspace.WORKER``, a hash of its engine, device,
precision and self-check figures) and says it is alive every ``HEARTBEAT_SECONDS`` in
``keyspace.WORKERS_SEEN``. A worker that has not said so within ``LIVE_WITHIN_SECONDS`` (killed, its
host gone) is no longer listed. What is public is the engine and precision and why, never the
worker's host name, process, or model path: readiness is answered to anonymous callers.
"""

from __future__ import annotations

import time

import redis
from pydantic import BaseModel, Field

from common import keyspace

HEARTBEAT_SECONDS = 10.0
LIVE_WITHIN_SECONDS = 3 * HEARTBEAT_SECONDS


class PrecisionCheckModel(BaseModel):
    """The reduced-precision self-check a worker ran at start: |Δα| against fp32 on the calibration
    portraits, and the bound (half the tolerance) both figures had to stay under."""

    passed: bool
    mean: float = Field(description="mean |Δα|, worst calibration portrait")
    p99: float = Field(description="99th percentile of |Δα|, worst calibration portrait")
    bound: float = Field(description="what both figures must stay under (half the tolerance)")


class WorkerState(BaseModel):
    """One live worker's network: its engine, device kind and precision, and why that precision."""

    engine: str = Field(examples=["openvino"])
    device: str = Field(description="cpu, or cuda with its index", examples=["cpu"])
    precision: str = Field(examples=["fp32"])
    precision_reason: str = Field(description="the self-check's verdict and figures, or why none ran")
    precision_check: PrecisionCheckModel | None = Field(
        default=None, description="the self-check run at the worker's start; null when none ran"
    )

    @classmethod
    def from_record(cls, record: dict[str, str]) -> WorkerState:
        check = None
        if "precision_check_passed" in record:
            check = PrecisionCheckModel(
                passed=record["precision_check_passed"] == "true",
                mean=float(record["precision_check_mean"]),
                p99=float(record["precision_check_p99"]),
                bound=float(record["precision_check_bound"]),
            )
        return cls(
            engine=record.get("engine", "unknown"),
            device=record.get("device", "unknown"),
            precision=record.get("precision", "unknown"),
            precision_reason=record.get("precision_reason", ""),
            precision_check=check,
        )


def mark_alive(client: redis.Redis, name: str, *, now: float | None = None) -> None:
    """The worker ``name`` is alive now (its record is written by the worker itself); workers silent
    for longer than ``LIVE_WITHIN_SECONDS`` are dropped from the set, so it does not grow."""
    moment = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    pipe.zadd(keyspace.WORKERS_SEEN, {name: moment})
    pipe.zremrangebyscore(keyspace.WORKERS_SEEN, "-inf", moment - LIVE_WITHIN_SECONDS)
    pipe.execute()


def forget(client: redis.Redis, name: str) -> None:
    """The worker ``name`` stopped: it is no longer listed."""
    client.zrem(keyspace.WORKERS_SEEN, name)


def live_workers(client: redis.Redis, *, now: float | None = None) -> list[WorkerState]:
    """The workers that said they were alive within ``LIVE_WITHIN_SECONDS`` and have a record, in name
    order. Only reads: readiness probes come often, and the heartbeats prune the set."""
    moment = time.time() if now is None else now
    names = client.zrangebyscore(keyspace.WORKERS_SEEN, moment - LIVE_WITHIN_SECONDS, "+inf")
    if not names:
        return []
    pipe = client.pipeline(transaction=False)
    for name in sorted(names):
        pipe.hgetall(keyspace.WORKER.format(name=name))
    return [WorkerState.from_record(record) for record in pipe.execute() if record]
