"""The worker's Celery tasks: process a job, deliver a webhook. Each only wires the service to a module."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import redis
from celery import Task
from celery.exceptions import Reject
from celery.signals import worker_shutting_down

from common.errors import BackdropError
from common.public import BatchModel, JobModel
from common.queue import DELIVER_WEBHOOK, PROCESS_JOB
from common.settings import Settings
from common.webhooks import build_payload, deliver, retry_delay
from worker.celery_app import app, service, settings
from worker.processing import fail_job, process_job
from worker.service import WorkerService

log = logging.getLogger(__name__)

# Redis unreachable (or still loading its data after a restart): it is the broker as well as the records.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
# Failures of services a job needs (not of the job itself) that are not Backdrop's own errors.
TRANSIENT_SERVICE_ERRORS: tuple[type[Exception], ...] = REDIS_ERRORS
# Waits between checks of whether Redis is back: doubling from the first, up to the last.
REDIS_WAIT_FIRST_SECONDS = 0.5
REDIS_WAIT_MAX_SECONDS = 5.0
# Set when the worker begins to shut down: a job waiting for Redis gives up and leaves its message to the broker.
_shutting_down = threading.Event()


@worker_shutting_down.connect
def _stop_waiting(**_: object) -> None:
    _shutting_down.set()


def is_retryable(exc: BaseException) -> bool:
    """Whether the same job may succeed a little later: derived from the error hierarchy's ``retryable``."""
    return isinstance(exc, TRANSIENT_SERVICE_ERRORS) or (isinstance(exc, BackdropError) and exc.retryable)


def _backoff(retries: int, cap: float = 30) -> float:
    """Seconds before retry ``retries + 1``: doubling from 1 s, at most ``cap``."""
    return min(2**retries, cap)


def longest_wait(settings: Settings) -> float:
    """The longest a retry message may wait: half the visibility timeout. It waits in its worker as an
    unacknowledged message; held past the visibility timeout, Redis hands it out again."""
    return settings.visibility_timeout / 2


def retry_countdown(retries: int, settings: Settings) -> float:
    """Seconds before retry ``retries + 1``: the backoff, capped at ``longest_wait`` too (each redelivery
    of a message held longer would count against BACKDROP_MAX_DELIVERIES)."""
    return _backoff(retries, min(settings.task_retry_backoff_max_seconds, longest_wait(settings)))


def gives_up(retries: int, max_retries: int | None, failing_since: float, deadline_seconds: float) -> bool:
    """Whether a job failing for a transient reason since ``failing_since`` (unix time) is failed now:
    once the retry deadline has passed, or after ``max_retries`` retries (a bound of last resort)."""
    exhausted = max_retries is not None and retries >= max_retries
    return exhausted or time.time() - failing_since >= deadline_seconds


def is_new_delivery(task: Task) -> bool:
    """Whether this run's message is a new delivery of the job to a worker: its first message, one
    the reconciler sent, or any message kombu handed out again after its worker was lost (not a retry
    message this task published itself)."""
    delivery_info = task.request.delivery_info or {}
    return task.request.retries == 0 or bool(delivery_info.get("redelivered"))


def wait_for_redis(client: redis.Redis, deadline: float) -> bool:
    """Wait, with growing pauses, until Redis answers again; False if it has not by ``deadline``
    (monotonic), or when the worker is shutting down."""
    pause = REDIS_WAIT_FIRST_SECONDS
    while True:
        try:
            client.ping()
            return True
        except redis.RedisError:
            left = deadline - time.monotonic()
            if left <= 0 or _shutting_down.wait(min(pause, left)):
                return False
            pause = min(pause * 2, REDIS_WAIT_MAX_SECONDS)


@app.task(name=PROCESS_JOB, bind=True, max_retries=settings.task_max_retries)
def process_job_task(self: Task, job_id: str, failing_since: float | None = None) -> str:
    """Run a job; its message is acknowledged when this returns (``acks_late``).

    A Redis outage is waited out here, the message unacknowledged, and the job run again: ``self.retry``
    would publish through the broker that is down, and Celery turns that failed publish into a reject
    that drops the message. Other transient errors (storage, a photo URL) are retried with ``self.retry``
    and capped backoff until ``task_retry_deadline_seconds`` after the first of them, so an outage of
    minutes loses nothing; should that publish fail, the outage is waited out here as well."""
    svc = service()
    delivery = uuid.uuid4().hex if is_new_delivery(self) else None
    outage_deadline: float | None = None
    while True:
        try:
            outcome = process_job(svc, job_id, delivery=delivery)
            return outcome.status.value if outcome.status else outcome.detail
        except REDIS_ERRORS as exc:
            outage = exc
        except Exception as exc:
            if not is_retryable(exc):
                log.exception("job %s failed unexpectedly", job_id)
                fail_job(svc, job_id, exc)
                return "failed"
            since = failing_since or time.time()
            deadline = svc.settings.task_retry_deadline_seconds
            if gives_up(self.request.retries, self.max_retries, since, deadline):
                log.error("job %s: giving up after %d retries: %s", job_id, self.request.retries, exc)
                fail_job(svc, job_id, exc)
                return "failed"
            log.warning("job %s: transient error, retrying: %s", job_id, exc)
            countdown = retry_countdown(self.request.retries, svc.settings)
            try:
                # The job id stays the one positional argument (what job_of_message reads), and is not
                # repeated as a keyword, which a Celery without the fix of celery#6494 passes twice.
                raise self.retry(exc=exc, countdown=countdown, args=[job_id], kwargs={"failing_since": since}) from exc
            except Reject as rejected:
                outage = rejected  # the retry could not be published: the broker is down
        if outage_deadline is None:
            outage_deadline = time.monotonic() + svc.settings.redis_outage_wait_seconds
        log.warning("job %s: Redis is unreachable (%s); waiting for it with the message unacknowledged", job_id, outage)
        if not wait_for_redis(svc.redis, outage_deadline):
            # Handed back to the broker: requeued if it answers now, else its unacknowledged message is
            # delivered again (or the job enqueued again by the reconciler) when Redis is back.
            log.error("job %s: Redis still unreachable; the job is left to its message's redelivery", job_id)
            raise Reject(outage, requeue=True) from outage


def hop_countdown(due: float, now: float, settings: Settings) -> float:
    """Seconds the message waits before its next step towards ``due`` (unix time): at most
    ``longest_wait``, as for a job's retry, so that the broker never hands a waiting copy out again."""
    return max(0.0, min(due - now, longest_wait(settings)))


def _wait_for_attempt(task: Task, attempt: int, due: float, settings: Settings) -> Exception:
    """The retry that takes the delivery's message one step nearer to attempt ``attempt`` at ``due``."""
    return task.retry(countdown=hop_countdown(due, time.time(), settings), kwargs={"attempt": attempt, "due": due})


# max_retries=None: the number of attempts is bounded by ``attempt``, not by the message's hops.
@app.task(name=DELIVER_WEBHOOK, bind=True, max_retries=None)
def deliver_webhook_task(
    self: Task, subject_id: str, event: str, message_id: str, attempt: int = 1, due: float = 0.0
) -> str:
    """POST a signed event (of a job, or of a batch) to its webhook URL; retried with backoff on 5xx,
    408, 429 and network errors, with the same message id. A wait longer than half the visibility
    timeout (5 s, 25 s, then minutes) is made of several shorter ones, ``due`` being the attempt's time."""
    svc = service()
    if time.time() < due:  # a step of a long wait: no attempt yet
        raise _wait_for_attempt(self, attempt, due, svc.settings)
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
    if result.retryable and attempt < svc.settings.webhook_max_attempts:
        log.warning("webhook %s of %s failed (%s); retrying", event, subject_id, result.error or result.status)
        raise _wait_for_attempt(self, attempt + 1, time.time() + retry_delay(attempt), svc.settings)
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
