"""The reconciler: pending jobs whose message is lost are enqueued again, or failed past their deliveries;
batches whose request died while writing them are withdrawn.

A job's record can stay ``queued`` or ``processing`` with no message left in the broker: a worker killed
between kombu's pop and its unacked record, an API killed between the record and the message, a Redis
crash during a hand-off. Every worker process runs a ``ReconcilerLoop``; a Redis lock with a TTL makes
one run at a time cluster-wide, at most once per interval. It looks only at jobs with no sign of life
(enqueue, start, delivery, or a message seen by an earlier run) for a few visibility timeouts.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from dataclasses import dataclass, field

import redis
from celery import Celery

from common import keyspace
from common.batches import BATCH_WRITE_LEASE_SECONDS
from common.errors import RecordDamaged, WorkerLost
from common.jobs import JobStore, TransitionRefused
from common.queue import jobs_in_broker, queue_for, queue_of, send_job
from common.settings import Settings
from common.storage import Storage
from worker.notifications import JobEvents

log = logging.getLogger(__name__)

# Most stale jobs looked at in one run; older ones first, the rest in the next runs.
RUN_LIMIT = 1000
# A message is "lost" only when two looks this far apart both miss it: a live worker's gap between
# kombu's pop and its unacked record is far shorter.
RECHECK_DELAY_SECONDS = 1.0


@dataclass
class Report:
    """What one run did, by job id."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    alive: int = 0  # stale jobs whose message was found
    withdrawn: list[str] = field(default_factory=list)  # batches whose request died while writing them


class Reconciler:
    """One pass over the stale part of the pending index (``run_once``); no locking of its own."""

    def __init__(
        self,
        client: redis.Redis,
        jobs: JobStore,
        events: JobEvents,
        storage: Storage,
        celery: Celery,
        settings: Settings,
        *,
        recheck_delay: float = RECHECK_DELAY_SECONDS,
        stop: threading.Event | None = None,
    ) -> None:
        self.redis = client
        self.jobs = jobs
        self.events = events
        self.storage = storage  # where a withdrawn batch's objects are deleted
        self.celery = celery
        self.settings = settings
        self.recheck_delay = recheck_delay
        self.stopping = stop or threading.Event()  # set: a run in progress ends at its pause
        self._indexed = False

    @property
    def stale_after(self) -> float:
        """Seconds without a sign of life after which a pending job's message is looked for."""
        return self.settings.visibility_timeout * self.settings.reconcile_after_timeouts

    def run_once(self, now: float) -> Report:
        """Find the jobs pending with no sign of life since ``now`` minus ``stale_after`` (Unix times, as
        every process writes them: clocks are assumed in sync) that have no message (looking twice), and
        enqueue each again, or fail it when it has had its deliveries."""
        report = Report()
        self._withdraw_stalled_batches(now, report)
        if not self._indexed:
            # Records written before the index existed; once per process is enough.
            self.jobs.index_pending_sets()
            self._indexed = True
        candidates = dict(self.jobs.stale(now - self.stale_after, RUN_LIMIT))
        if not candidates:
            return report
        missing = self._without_message(candidates, report)
        if not missing or self.stopping.wait(self.recheck_delay):
            return report
        missing = self._without_message(missing, report)
        for job_id, score in missing.items():
            self._reclaim(job_id, score, report)
        return report

    def _withdraw_stalled_batches(self, now: float, report: Report) -> None:
        """Withdraw the batches whose request died part-way (a crashed API process): its client never
        learned the batch's id, and the batch would never complete."""
        batches = self.events.batches
        for batch_id in batches.take_stalled(now - BATCH_WRITE_LEASE_SECONDS, RUN_LIMIT):
            canceled = batches.withdraw(batch_id, self.storage)
            log.warning("reconciler: batch %s was never written whole; withdrawn, %d jobs canceled", batch_id, canceled)
            report.withdrawn.append(batch_id)

    def _without_message(self, candidates: dict[str, float], report: Report) -> dict[str, float]:
        """The candidates with no message in the broker; those with one get a sign of life."""
        present = jobs_in_broker(self.redis)
        alive = [job_id for job_id in candidates if job_id in present]
        self.jobs.seen(alive)
        report.alive += len(alive)
        return {job_id: score for job_id, score in candidates.items() if job_id not in present}

    def _reclaim(self, job_id: str, score: float, report: Report) -> None:
        decision = self.jobs.reclaim(job_id, score, self.settings.max_deliveries)
        if decision == "requeue":
            try:
                job = self.jobs.get(job_id)
            except RecordDamaged as exc:
                # Its message lets a worker fail it (worker.processing.fail_damaged_job), so that its batch
                # completes instead of waiting for it for ever.
                send_job(self.celery, job_id, queue_for(exc.batch_id))
                log.error("reconciler: the record of job %s is damaged; enqueued again to be failed", job_id)
                report.requeued.append(job_id)
                return
            if job is None or job.status.is_terminal:
                return
            send_job(self.celery, job_id, queue_of(job))
            log.warning("reconciler: job %s (%s) had no message; enqueued again", job_id, job.status.value)
            report.requeued.append(job_id)
        elif decision == "exhausted":
            error = WorkerLost(
                f"delivered {self.settings.max_deliveries} times and never finished: its worker was lost each time"
            )
            with contextlib.suppress(TransitionRefused):
                if self.jobs.fail(job_id, error.code, error.message):
                    self.events.job_finished(job_id)
                    log.error("reconciler: job %s failed: %s", job_id, error.message)
                    report.failed.append(job_id)


class ReconcilerLoop:
    """A daemon thread that, every ``reconcile_interval_seconds`` (with jitter), takes the cluster-wide
    lock and runs the reconciler. The lock is not released: its TTL of one interval is what keeps the
    cluster to one run per interval, however many workers there are. Runs that overlap anyway (a run
    longer than the interval) are harmless, as each job is claimed atomically."""

    def __init__(self, reconciler: Reconciler, settings: Settings, name: str) -> None:
        self.reconciler = reconciler
        self.settings = settings
        self.name = name
        self._stop = reconciler.stopping
        self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        interval = self.settings.reconcile_interval_seconds
        while not self._stop.wait(interval * random.uniform(0.5, 1.0)):
            try:
                if self._take_lock(interval):
                    report = self.reconciler.run_once(time.time())
                    if report.requeued or report.failed or report.withdrawn:
                        log.info(
                            "reconciler: %d enqueued again, %d failed, %d batches withdrawn",
                            len(report.requeued),
                            len(report.failed),
                            len(report.withdrawn),
                        )
            except redis.RedisError as exc:
                log.warning("reconciler: Redis unavailable (%s); will try again", exc)
            except Exception:
                log.warning("reconciler run failed; will try again", exc_info=True)

    def _take_lock(self, interval: float) -> bool:
        ttl_ms = max(1, int(interval * 1000))
        return bool(self.reconciler.redis.set(keyspace.RECONCILER_LOCK, self.name, nx=True, px=ttl_ms))
