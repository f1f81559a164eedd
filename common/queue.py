"""The Celery side shared by the API (which only enqueues, by task name) and the worker."""

from __future__ import annotations

import uuid

from celery import Celery
from kombu import Exchange, Queue

from common.batches import BatchStore
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
