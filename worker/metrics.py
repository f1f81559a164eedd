"""A worker process's Prometheus metrics, served on a port of its own (``BACKDROP_WORKER_METRICS_PORT``).

The worker runs its jobs in threads of one process (``--pool threads``), so the default registry of
that process holds everything: one scrape target per worker process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import redis
from prometheus_client import Counter, Gauge, Histogram, Info, start_http_server

from common.errors import BackdropError
from common.jobs import Job, JobStatus
from common.queue import queue_of
from common.settings import Settings

if TYPE_CHECKING:  # the engines import torch; these metrics are only handed their decision
    from worker.engines.selection import EngineChoice

log = logging.getLogger(__name__)

# Seconds: from a few milliseconds (a stage of a small photo) to minutes (a job behind a long batch).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256)

JOBS_SUCCEEDED = Counter("backdrop_jobs_succeeded", "Jobs this worker ran to success.", ["queue"])
JOBS_FAILED = Counter("backdrop_jobs_failed", "Jobs this worker failed, by error code.", ["queue", "code"])
JOBS_CANCELED = Counter("backdrop_jobs_canceled", "Jobs canceled while this worker ran them.", ["queue"])
JOB_LATENCY = Histogram(
    "backdrop_job_latency_seconds",
    "From a job's submission to its end (succeeded or failed), by queue.",
    ["queue"],
    buckets=LATENCY_BUCKETS,
)
JOB_STAGE = Histogram(
    "backdrop_job_stage_seconds",
    "Time of one stage of a job: read, decode, network (batch wait and forward pass), composite, encode, "
    "faces and id_photo (ID-photo jobs), store.",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
BATCH_SIZE = Histogram("backdrop_batch_size", "Images per forward pass.", buckets=BATCH_SIZE_BUCKETS)
BATCHES = Counter(
    "backdrop_batches",
    "Batches run, by batcher and by what made each run: full (max batch size), delay (max_delay_ms ran "
    "out), nobody_else (every job that could join was already waiting), closing.",
    ["batcher", "reason"],
)
FORWARD_SECONDS = Histogram("backdrop_forward_seconds", "Time of one forward pass.", buckets=STAGE_BUCKETS)
IN_FLIGHT = Gauge("backdrop_worker_jobs_in_flight", "Jobs this worker process is running now.")
MODEL = Info("backdrop_worker_model", "The model this worker runs: device, precision, engine, checkpoint.")
PRECISION = Info(
    "backdrop_worker_precision",
    "The precision this worker runs and why: the precision, engine and device, the faster precision the "
    "self-check tried (none when it did not run) and its verdict (passed, failed, not_run).",
)
PRECISION_CHECK = Gauge(
    "backdrop_worker_precision_check_delta_alpha",
    "The reduced-precision self-check at worker start: |Δα| between fp32 and the faster precision on the "
    "calibration portraits (mean and p99: the worst portrait's; bound: what both must stay under).",
    ["statistic"],
)

# What a job's task returns when it has just finished the job (other answers: nothing was done).
FINISHED = frozenset({JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, JobStatus.CANCELED.value})


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Observe the time of the block as ``stage``, when it completes."""
    start = time.perf_counter()
    yield
    observe_stage(stage, time.perf_counter() - start)


def observe_stage(stage: str, seconds: float) -> None:
    """A job's ``stage`` took ``seconds`` (timed elsewhere: a batch of the job's post-processing)."""
    JOB_STAGE.labels(stage).observe(seconds)


def observe_forward(batch_size: int, seconds: float) -> None:
    BATCH_SIZE.observe(batch_size)
    FORWARD_SECONDS.observe(seconds)


def count_batch(batcher: str, reason: str) -> None:
    BATCHES.labels(batcher, reason).inc()


def describe_model(device: str, precision: str, engine: str, checkpoint: str) -> None:
    MODEL.info({"device": device, "precision": precision, "engine": engine, "checkpoint": checkpoint})


def describe_precision(choice: EngineChoice | None, device: str) -> None:
    """Export and log the precision decision of the worker's engine and the self-check's figures."""
    if choice is None:
        return
    engine, check = choice.engine, choice.precision_check
    verdict = "not_run" if check is None else "passed" if check.passed else "failed"
    PRECISION.info(
        {
            "precision": engine.precision.value,
            "engine": engine.name,
            "device": device,
            "tried": "none" if check is None else check.precision.value,
            "verdict": verdict,
        }
    )
    if check is None:
        log.info("precision %s on %s (%s): %s", engine.precision.value, device, engine.name, choice.precision_reason)
        return
    PRECISION_CHECK.labels("mean").set(check.mean)
    PRECISION_CHECK.labels("p99").set(check.p99)
    PRECISION_CHECK.labels("bound").set(check.bound)
    log.info(
        "precision %s on %s (%s): self-check of %s %s, mean |Δα| %.3e, p99 %.3e, bound %.3e",
        engine.precision.value,
        device,
        engine.name,
        check.precision.value,
        verdict,
        check.mean,
        check.p99,
        check.bound,
    )


def record_outcome(job: Job | None, finished: str) -> None:
    """Count a job this worker has just finished (``finished``: the status it gave it) and observe its
    latency from submission, from its record."""
    if job is None:
        return
    queue = queue_of(job)
    if finished == JobStatus.SUCCEEDED.value:
        JOBS_SUCCEEDED.labels(queue).inc()
    elif finished == JobStatus.FAILED.value:
        JOBS_FAILED.labels(queue, job.error.code if job.error else "internal_error").inc()
    elif finished == JobStatus.CANCELED.value:
        JOBS_CANCELED.labels(queue).inc()
        return
    else:
        return
    if job.finished_at is not None:
        JOB_LATENCY.labels(queue).observe(max(0.0, (job.finished_at - job.created_at).total_seconds()))


def read_finished_job(read: Callable[[str], Job | None], job_id: str) -> Job | None:
    """The record of a job just finished, for its metrics; None when it cannot be read now."""
    try:
        return read(job_id)
    except (redis.RedisError, BackdropError):
        log.warning("job %s: could not read its record for metrics", job_id, exc_info=True)
        return None


def start_metrics_server(settings: Settings) -> bool:
    """Serve this process's metrics at ``http://<host>:<port>/metrics``; False when off or the port is
    taken (the worker runs on without them)."""
    if not settings.worker_metrics_port:
        return False
    try:
        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
    except OSError as exc:
        log.warning("worker metrics not served on port %d: %s", settings.worker_metrics_port, exc)
        return False
    log.info("worker metrics at http://%s:%d/metrics", settings.worker_metrics_host, settings.worker_metrics_port)
    return True
