"""The Celery side shared by the API (which only enqueues, by task name) and the worker: the app's
configuration, sending a job's message, and finding which jobs have a message in the broker."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any

import redis
from celery import Celery
from kombu import Exchange, Queue
from kombu.transport.redis import Channel

from common.batches import BatchStore
from common.broker import TRANSPORT
from common.jobs import Job
from common.settings import Settings

PROCESS_JOB = "backdrop.process_job"
DELIVER_WEBHOOK = "backdrop.deliver_webhook"
INTERACTIVE_QUEUE = "interactive"
BATCH_QUEUE = "batch"


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured for at-least-once delivery without loss."""
    app = Celery("backdrop", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        broker_transport=TRANSPORT,  # kombu's Redis transport, surviving queue items that are not messages
        task_queues=[Queue(name, Exchange(name), routing_key=name) for name in (INTERACTIVE_QUEUE, BATCH_QUEUE)],
        task_default_queue=INTERACTIVE_QUEUE,
        task_routes={PROCESS_JOB: {"queue": INTERACTIVE_QUEUE}},
        # A job is acknowledged only when it has finished; a worker that dies mid-job (even by
        # SIGKILL) leaves its messages unacknowledged, and they are delivered again.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,  # results live in our job records and storage
        # Each pool thread holds one message: the prefetch is the worker's concurrency, which is
        # sized to feed the batcher (2 x max_batch_size by default).
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # Redelivery of an unacknowledged message waits this long; it must exceed the longest
            # job or healthy jobs run twice (which is safe, but wasteful).
            "visibility_timeout": settings.visibility_timeout,
            # kombu sweeps for such messages every interval x throttle seconds (10 x 10 by default,
            # ~100 s); 1 x 1 brings a killed worker's jobs back within visibility_timeout + ~1 s.
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
            # Workers take from the queues strictly in the order they list them (interactive, then
            # batch), so a large batch never delays a user waiting on one photo.
            "queue_order_strategy": "priority",
        },
        worker_hijack_root_logger=False,
        task_serializer="json",
        accept_content=["json"],
    )
    return app


def queue_of(job: Job) -> str:
    """The queue a job's message goes to: a batch's jobs to ``batch``, the others to ``interactive``."""
    return queue_for(job.batch_id)


def queue_for(batch_id: str | None) -> str:
    """The queue of a job of batch ``batch_id`` (None: a single job)."""
    return BATCH_QUEUE if batch_id else INTERACTIVE_QUEUE


def send_job(app: Celery, job_id: str, queue: str) -> None:
    """Send ``process_job(job_id)``: the message carries only the id; the record holds everything else."""
    app.send_task(PROCESS_JOB, args=[job_id], queue=queue)


def job_of_message(payload: Any) -> str | None:
    """The job id a ``process_job`` message (kombu's JSON envelope, as a dict) carries; None for any
    other task or for a message that cannot be read."""
    try:
        if payload["headers"]["task"] != PROCESS_JOB:
            return None
        body = payload["body"]
        if payload.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return args[0] if args and isinstance(args[0], str) else None
    except (KeyError, IndexError, TypeError, ValueError, binascii.Error):
        return None


def _queue_lists() -> list[str]:
    """The Redis lists kombu keeps our queues in: one per queue and priority step."""
    return [
        name if step == 0 else f"{name}{Channel.sep}{step}"
        for name in (INTERACTIVE_QUEUE, BATCH_QUEUE)
        for step in Channel.priority_steps
    ]


def jobs_in_broker(client: redis.Redis) -> set[str]:
    """Every job id with a ``process_job`` message waiting in a queue or delivered and not yet
    acknowledged (kombu's ``unacked`` hash), read in one transaction so that no message moving between
    the two (a redelivery) is missed. The one move not covered is kombu's pop before its unacked
    record, a moment in a live worker: callers look twice before concluding that a message is lost."""
    with client.pipeline(transaction=True) as pipe:
        for name in _queue_lists():
            pipe.lrange(name, 0, -1)
        pipe.hvals(Channel.unacked_key)
        *queued, unacked = pipe.execute()
    found: set[str] = set()
    for raw in [item for items in queued for item in items]:
        found.add(_job_of_raw(raw, unacked=False) or "")
    for raw in unacked:
        found.add(_job_of_raw(raw, unacked=True) or "")
    found.discard("")
    return found


def _job_of_raw(raw: str | bytes, *, unacked: bool) -> str | None:
    """The job id of one stored message: a queue item is the envelope, an unacked entry is
    ``[envelope, exchange, routing key]``."""
    try:
        decoded = json.loads(raw)
    except ValueError:
        return None
    if unacked:
        decoded = decoded[0] if isinstance(decoded, list) and decoded else None
    return job_of_message(decoded)


def notify(app: Celery, job: Job, event: str) -> None:
    """Queue a webhook delivery of ``event`` ("started" or "completed") when the job asked for one."""
    if job.options.webhook_url and event in job.options.webhook_events:
        app.send_task(DELIVER_WEBHOOK, args=[job.id, f"job.{event}", uuid.uuid4().hex], queue=INTERACTIVE_QUEUE)


def notify_batch_completed(app: Celery, batches: BatchStore, batch_id: str | None) -> None:
    """Queue the batch's one ``batch.completed`` event if its last job just finished."""
    if batch_id is None:
        return
    batch = batches.claim_completion(batch_id)
    if batch is not None and batch.webhook_url:
        app.send_task(DELIVER_WEBHOOK, args=[batch.id, "batch.completed", uuid.uuid4().hex], queue=INTERACTIVE_QUEUE)
