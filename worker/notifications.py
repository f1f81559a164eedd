"""The worker's side of webhooks: queue a job's events, and its batch's when its last job finishes.

Queuing an event never fails the job: a broker hiccup loses that event's delivery, not the work.
"""

from __future__ import annotations

import logging

from celery import Celery

from common.batches import BatchStore
from common.jobs import JobStore
from common.queue import notify, notify_batch_completed

log = logging.getLogger(__name__)


class JobEvents:
    def __init__(self, celery: Celery | None, jobs: JobStore, batches: BatchStore) -> None:
        self.celery = celery  # None: events are not sent (a service used outside Celery)
        self.jobs = jobs
        self.batches = batches

    def job_started(self, job_id: str) -> None:
        """Queue the job's ``started`` webhook if it asked for one."""
        if self.celery is None:
            return
        try:
            job = self.jobs.get(job_id)
            if job is not None:
                notify(self.celery, job, "started")
        except Exception:
            log.warning("could not queue the started webhook of job %s", job_id, exc_info=True)

    def job_finished(self, job_id: str) -> None:
        """A job reached a final state: its ``completed`` webhook, and its batch's if it was the last."""
        if self.celery is None:
            return
        try:
            job = self.jobs.get(job_id)
            if job is None:
                return
            notify(self.celery, job, "completed")
            if job.batch_id:
                self.batch_member_finished(job.batch_id)
        except Exception:
            log.warning("could not queue the completion events of job %s", job_id, exc_info=True)

    def batch_member_finished(self, batch_id: str) -> None:
        """A job of the batch reached a final state (its record readable or not): the batch's event if
        it was the last."""
        if self.celery is None:
            return
        try:
            notify_batch_completed(self.celery, self.batches, batch_id)
        except Exception:
            log.warning("could not queue the completion event of batch %s", batch_id, exc_info=True)
