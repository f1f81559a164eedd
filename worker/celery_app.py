"""The Celery worker: ``celery -A worker.celery_app:app worker --pool threads``.

One process holds one MODNet (loaded and warmed up at start); its pool threads decode, composite,
encode and upload jobs in parallel while the batcher groups their network inputs into forward passes.
"""

from __future__ import annotations

import logging
import os
import threading

from celery import Task
from celery.signals import worker_init, worker_shutdown

from common.batches import BatchStore, batch_view
from common.errors import ModelError
from common.job_view import job_view
from common.keys import KeyStore
from common.queue import DELIVER_WEBHOOK, PROCESS_JOB, make_celery
from common.settings import Settings, get_settings
from common.webhooks import build_payload, deliver, retry_delay
from worker.runtime import resolve_device
from worker.service import WorkerService
from worker.tasks import TRANSIENT_ERRORS, fail_job, process_job

log = logging.getLogger(__name__)

CPU_CONCURRENCY = 2


def default_concurrency(config: Settings) -> int:
    """Jobs in flight in one worker. On a GPU, two batches' worth: one in the forward pass while the
    next is decoded. On a CPU, the network already uses every core and batching gains nothing, so
    a few jobs keep it busy; more would only wait in the worker, where their messages are reserved
    and count against the visibility timeout."""
    if config.worker_concurrency:
        return config.worker_concurrency
    if resolve_device(config.device).type == "cuda":
        return 2 * config.max_batch_size
    return CPU_CONCURRENCY


settings = get_settings()
app = make_celery(settings)
app.conf.update(worker_pool="threads", worker_concurrency=default_concurrency(settings))

_service: WorkerService | None = None
_service_lock = threading.Lock()


def service() -> WorkerService:
    """The process's resident service, created on first use."""
    global _service
    with _service_lock:
        if _service is None:
            _service = WorkerService.start(settings)
            _service.celery = app
        return _service


@worker_init.connect
def _load_model(**_: object) -> None:
    try:
        service()
    except ModelError as exc:
        log.critical("cannot start the worker: %s", exc.message)
        # The worker is useless without its model; exit rather than take jobs and fail them.
        os._exit(3)


@worker_shutdown.connect
def _close(**_: object) -> None:
    if _service is not None:
        _service.close()


def _backoff(retries: int) -> int:
    return min(2**retries, 30)


@app.task(name=PROCESS_JOB, bind=True, max_retries=settings.task_max_retries)
def process_job_task(self: Task, job_id: str) -> str:
    svc = service()
    try:
        outcome = process_job(svc, job_id)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= self.max_retries:
            log.error("job %s: giving up after %d retries: %s", job_id, self.request.retries, exc)
            fail_job(svc, job_id, exc)
            return "failed"
        log.warning("job %s: transient error, retrying: %s", job_id, exc)
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
    except Exception as exc:
        log.exception("job %s failed unexpectedly", job_id)
        fail_job(svc, job_id, exc)
        return "failed"
    return outcome.status.value if outcome.status else outcome.detail


@app.task(name=DELIVER_WEBHOOK, bind=True, max_retries=max(0, settings.webhook_max_attempts - 1))
def deliver_webhook_task(self: Task, subject_id: str, event: str, message_id: str) -> str:
    """POST a signed event (of a job, or of a batch) to its webhook URL; retried with backoff on 5xx,
    408, 429 and network errors, with the same message id."""
    svc = service()
    target = _webhook_target(svc, subject_id, event)
    if target is None:
        return "dropped: no such job or batch, or no webhook"
    url, owner, data = target
    result = deliver(
        url,
        KeyStore(svc.redis).webhook_secret(owner),
        message_id,
        build_payload(event, data),
        allow_private=svc.settings.fetch_allow_private,
        timeout=svc.settings.fetch_timeout_seconds,
    )
    if result.ok:
        return f"delivered: HTTP {result.status}"
    if result.retryable and self.request.retries < self.max_retries:
        log.warning("webhook %s of %s failed (%s); retrying", event, subject_id, result.error or result.status)
        raise self.retry(countdown=retry_delay(self.request.retries + 1))
    log.warning("webhook %s of %s given up: %s", event, subject_id, result.error or result.status)
    return f"failed: {result.error or result.status}"


def _webhook_target(svc: WorkerService, subject_id: str, event: str) -> tuple[str, str, dict] | None:
    """(url, owner, payload data) of an event, rebuilt at each attempt so its links are fresh."""
    if event.startswith("batch."):
        batches = BatchStore(svc.redis, svc.jobs)
        batch = batches.get(subject_id)
        if batch is None or not batch.webhook_url:
            return None
        return batch.webhook_url, batch.owner, batch_view(batches, batch, svc.storage, svc.settings)
    job = svc.jobs.get(subject_id)
    if job is None or not job.options.webhook_url:
        return None
    return job.options.webhook_url, job.owner, job_view(job, svc.storage, svc.settings)
