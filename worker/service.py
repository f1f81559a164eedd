"""What a worker process keeps resident: settings, job store, storage, MODNet and its batcher."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence

import numpy as np
import redis
from celery import Celery

from common.batches import BatchStore
from common.jobs import WORKER_KEY, JobStore
from common.queue import notify, notify_batch_completed
from common.settings import Settings
from common.storage import JOB_OBJECT_PREFIXES, Storage, storage_from_settings
from worker.batcher import Batcher
from worker.runtime import ModelRunner

log = logging.getLogger(__name__)


class WorkerService:
    """Loaded once per worker process (the model is the expensive part) and shared by its threads."""

    def __init__(self, settings: Settings, runner: ModelRunner, storage: Storage, client: redis.Redis) -> None:
        self.settings = settings
        self.runner = runner
        self.storage = storage
        self.redis = client
        self.jobs = JobStore(client, settings.job_ttl_seconds)
        self.celery: Celery | None = None  # set by the Celery app; used to queue webhook deliveries
        self.name = f"{socket.gethostname()}:{threading.get_native_id()}"
        self.batcher: Batcher[np.ndarray, np.ndarray] = Batcher(
            self._forward,
            key=lambda image: image.shape,
            max_batch_size=settings.max_batch_size,
            max_delay_ms=settings.max_delay_ms,
            name="modnet-batcher",
        )

    @classmethod
    def start(cls, settings: Settings) -> WorkerService:
        runner = ModelRunner.from_settings(settings)
        runner.warm_up(settings.inference_ref_size, settings.inference_ref_size)
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        service = cls(settings, runner, storage_from_settings(settings), client)
        service.announce()
        service.start_cleanup()
        log.info("worker ready: %s on %s (%s)", service.name, runner.device, runner.precision.value)
        return service

    def notify(self, job_id: str, event: str) -> None:
        """Queue the job's webhook for ``event`` if it asked for one (never fails the job)."""
        if self.celery is None:
            return
        try:
            job = self.jobs.get(job_id)
            if job is not None:
                notify(self.celery, job, event)
        except Exception:
            log.warning("could not queue the %s webhook of job %s", event, job_id, exc_info=True)

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
                notify_batch_completed(self.celery, BatchStore(self.redis, self.jobs), job.batch_id)
        except Exception:
            log.warning("could not queue the completion events of job %s", job_id, exc_info=True)

    def start_cleanup(self) -> None:
        """Delete uploads and results older than the retention, every ``cleanup_interval_seconds``
        (job records expire by themselves in Redis)."""
        self._stop_cleanup = threading.Event()
        self._cleanup = threading.Thread(target=self._cleanup_loop, name="retention-cleanup", daemon=True)
        self._cleanup.start()

    def cleanup_expired(self) -> int:
        cutoff = time.time() - self.settings.job_ttl_seconds
        return sum(self.storage.delete_prefix(prefix, older_than=cutoff) for prefix in JOB_OBJECT_PREFIXES)

    def _cleanup_loop(self) -> None:
        while not self._stop_cleanup.wait(self.settings.cleanup_interval_seconds):
            try:
                removed = self.cleanup_expired()
                if removed:
                    log.info("retention: deleted %d expired objects", removed)
            except Exception:
                log.warning("retention cleanup failed; will try again", exc_info=True)

    def _forward(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        passes_before = self.runner.forward_passes
        mattes = self.runner.predict(images)
        try:
            self.redis.hincrby(
                WORKER_KEY.format(name=self.name), "forward_passes", self.runner.forward_passes - passes_before
            )
        except redis.RedisError:
            log.warning("could not record forward pass statistics", exc_info=True)
        return mattes

    def announce(self) -> None:
        """Record that this worker has its model loaded (read by readiness checks and tests)."""
        key = WORKER_KEY.format(name=self.name)
        self.redis.hset(key, mapping={"device": str(self.runner.device), "precision": self.runner.precision.value})
        self.redis.hsetnx(key, "forward_passes", 0)
        self.redis.expire(key, self.settings.job_ttl_seconds)

    def close(self) -> None:
        if hasattr(self, "_stop_cleanup"):
            self._stop_cleanup.set()
        self.batcher.close(timeout=60)
        self.redis.delete(WORKER_KEY.format(name=self.name))
        self.redis.close()
