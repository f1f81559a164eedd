"""Liveness and readiness."""

from __future__ import annotations

import logging

import redis
from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag

from api.context import ctx
from api.schemas import HealthModel, ReadyModel, errors, json_response, operation_id
from common.errors import BackdropError, StorageFull
from common.workers import WorkerState, live_workers

log = logging.getLogger(__name__)

WORKER_EXAMPLE = {
    "engine": "openvino",
    "device": "cpu",
    "precision": "fp32",
    "precision_reason": "fp32: bf16 failed: mean |Δα| 9.70e-03, p99 4.60e-02 (bound 1.00e-02, half of 2.00e-02) "
    "on 3 calibration portraits at 768x512",
    "precision_check": {"passed": False, "mean": 9.7e-03, "p99": 4.6e-02, "bound": 1.0e-02},
}

health = APIBlueprint("health", __name__, abp_tags=[Tag(name="health")], operation_id_callback=operation_id)


@health.get(
    "/healthz",
    responses={200: json_response(HealthModel, "the process answers", metered=False), **errors(metered=False)},
)
def healthz() -> Response:
    """The process answers."""
    return jsonify({"status": "ok"})


@health.get(
    "/readyz",
    responses={
        200: json_response(
            ReadyModel,
            "ready",
            metered=False,
            example={"status": "ready", "checks": {"redis": "ok", "storage": "ok"}, "workers": [WORKER_EXAMPLE]},
        ),
        503: json_response(
            ReadyModel,
            "not ready: the failing check says which",
            metered=False,
            example={"status": "not ready", "checks": {"redis": "ok", "storage": "unreachable"}, "workers": []},
        ),
        **errors(metered=False),
    },
)
def readyz() -> tuple[Response, int]:
    """Redis and storage are reachable and storage has room: the API can accept and report jobs. The
    answer says which check failed, never why (that goes to the log: callers are anonymous). It lists
    the workers alive now with their engine and precision decision, but no host, process or path."""
    checks: dict[str, str] = {}
    workers: list[WorkerState] = []
    try:
        ctx().redis.ping()
        checks["redis"] = "ok"
        workers = live_workers(ctx().redis)
    except redis.RedisError as exc:
        log.warning("readiness: redis unreachable: %s", exc)
        checks["redis"] = "unreachable"
    try:
        ctx().storage.check()
        checks["storage"] = "ok"
    except StorageFull as exc:
        log.warning("readiness: %s", exc.message)
        checks["storage"] = "full"
    except BackdropError as exc:
        log.warning("readiness: storage unavailable: %s", exc.message)
        checks["storage"] = "unreachable"
    ready = all(value == "ok" for value in checks.values())
    body = {
        "status": "ready" if ready else "not ready",
        "checks": checks,
        "workers": [worker.model_dump(mode="json") for worker in workers],
    }
    return jsonify(body), 200 if ready else 503
