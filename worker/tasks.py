"""The worker's Celery tasks: process a job, deliver a webhook. Each only wires the service to a module."""

from __future__ import annotations

import logging

import redis
from celery import Task

from common.errors import BackdropError
from common.public import BatchModel, JobModel
from common.queue import DELIVER_WEBHOOK, PROCESS_JOB
from common.webhooks import build_payload, deliver, retry_delay
from worker.celery_app import app, service, settings
from worker.processing import fail_job, process_job
from worker.service import WorkerService

log = logging.getLogger(__name__)

# Failures of services a job needs (not of the job itself) that are not Backdrop's own errors.
TRANSIENT_SERVICE_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)


def is_retryable(exc: BaseException) -> bool:
    """Whether the same job may succeed a little later: derived from the error hierarchy's ``retryable``."""
    return isinstance(exc, TRANSIENT_SERVICE_ERRORS) or (isinstance(exc, BackdropError) and exc.retryable)


def _backoff(retries: int) -> int:
    return min(2**retries, 30)


@app.task(name=PROCESS_JOB, bind=True, max_retries=settings.task_max_retries)
def process_job_task(self: Task, job_id: str) -> str:
    svc = service()
    try:
        outcome = process_job(svc, job_id)
    except Exception as exc:
        if not is_retryable(exc):
            log.exception("job %s failed unexpectedly", job_id)
            fail_job(svc, job_id, exc)
            return "failed"
        if self.request.retries >= self.max_retries:
            log.error("job %s: giving up after %d retries: %s", job_id, self.request.retries, exc)
            fail_job(svc, job_id, exc)
            return "failed"
        log.warning("job %s: transient error, retrying: %s", job_id, exc)
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
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
        svc.api_keys.webhook_secret(owner),
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
        batch = svc.batches.get(subject_id)
        if batch is None or not batch.webhook_url:
            return None
        jobs = [job for job in svc.batches.jobs_of(batch.id, 0, 99) if job is not None]
        model = BatchModel.of(
            batch, svc.batches.counts(batch.id), jobs, svc.storage, svc.settings, page=1, page_size=100
        )
        return batch.webhook_url, batch.owner, model.model_dump(mode="json")
    job = svc.jobs.get(subject_id)
    if job is None or not job.options.webhook_url:
        return None
    return job.options.webhook_url, job.owner, JobModel.of(job, svc.storage, svc.settings).model_dump(mode="json")
