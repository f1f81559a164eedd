"""What a worker process keeps resident: settings, stores, storage, MODNet and its batchers."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

import numpy as np
import redis
import torch
from celery import Celery

from common import keyspace
from common.api_keys import ApiKeyStore
from common.batches import BatchStore
from common.jobs import JobStore
from common.keyspace import redis_from_settings
from common.settings import Settings
from common.storage import Storage, storage_from_settings
from worker.batcher import Attendance, Batcher
from worker.device_finishing import FinishedPhoto, FinishingWork, finish_together, finishing_key
from worker.device_pipeline import DevicePipeline
from worker.faces import FaceDetector
from worker.memory_budget import MemoryBudget
from worker.metrics import count_batch, observe_forward
from worker.notifications import JobEvents
from worker.presence import PresenceLoop
from worker.reconciler import Reconciler, ReconcilerLoop
from worker.retention import RetentionLoop
from worker.runtime import ModelRunner

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


class WorkerService:
    """Loaded once per worker process (the model is the expensive part) and shared by its threads."""

    def __init__(
        self,
        settings: Settings,
        runner: ModelRunner,
        storage: Storage,
        client: redis.Redis,
        celery: Celery | None = None,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.storage = storage
        self.redis = client
        self.jobs = JobStore(client, settings.job_ttl_seconds)
        self.batches = BatchStore(client, self.jobs)
        self.api_keys = ApiKeyStore(client)
        self.events = JobEvents(celery, self.jobs, self.batches)  # celery None: no webhooks are queued
        self.retention = RetentionLoop(storage, settings)
        self.reconciler: ReconcilerLoop | None = None  # started with the service when it has Celery
        self._faces: FaceDetector | None = None
        self._faces_lock = threading.Lock()
        self.name = f"{socket.gethostname()}:{threading.get_native_id()}"
        self.presence = PresenceLoop(client, self.name, settings.job_ttl_seconds)
        # Jobs start only while their estimated peaks fit in it (worker/memory_budget.py).
        self.memory = MemoryBudget(settings.worker_memory_budget_mb * 2**20)
        # The jobs rendering now: when all of them wait on a batcher, its batch runs without more delay.
        self.attendance = Attendance()
        self.batcher: Batcher[np.ndarray, np.ndarray] = Batcher(
            self._forward,
            key=lambda image: image.shape,
            max_batch_size=settings.max_batch_size,
            max_delay_ms=settings.max_delay_ms,
            name="modnet-batcher",
            attendance=self.attendance,
            on_batch=count_batch,
        )
        # On a CUDA torch engine a photo stays on the GPU from decode to encode, batched there as tensors.
        self.device_pipeline = DevicePipeline.for_runner(runner, settings)
        self.device_batcher: Batcher[torch.Tensor, torch.Tensor] | None = None
        # ...and its post-processing too (same size, options and background); each job encodes its own.
        self.finishing_batcher: Batcher[FinishingWork, FinishedPhoto] | None = None
        if self.device_pipeline is not None:
            self.device_batcher = Batcher(
                self._forward_on_device,
                key=lambda network_input: tuple(network_input.shape),
                max_batch_size=settings.max_batch_size,
                max_delay_ms=settings.max_delay_ms,
                name="modnet-device-batcher",
                attendance=self.attendance,
                on_batch=count_batch,
            )
            self.finishing_batcher = Batcher(
                partial(finish_together, self.device_pipeline),
                key=finishing_key,
                max_batch_size=settings.max_batch_size,
                max_delay_ms=settings.max_delay_ms,
                name="device-finishing-batcher",
                attendance=self.attendance,
                on_batch=count_batch,
            )

    @classmethod
    def start(cls, settings: Settings, celery: Celery | None = None) -> WorkerService:
        runner = ModelRunner.from_settings(settings)
        runner.warm_up(settings.inference_ref_size, settings.inference_ref_size)
        service = cls(settings, runner, storage_from_settings(settings), redis_from_settings(settings), celery)
        service.announce()
        service.presence.start()
        service.retention.start()
        if celery is not None:
            reconciler = Reconciler(service.redis, service.jobs, service.events, service.storage, celery, settings)
            service.reconciler = ReconcilerLoop(reconciler, settings, service.name)
            service.reconciler.start()
        engine = runner.engine
        log.info("worker ready: %s on %s (%s, %s)", service.name, runner.device, engine.version, engine.precision.value)
        return service

    def _forward(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self._counted_pass(self.runner.predict, images)

    def _forward_on_device(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        assert self.device_pipeline is not None
        return self._counted_pass(self.device_pipeline.predict, inputs)

    def _counted_pass(self, predict: Callable[[Sequence[In]], list[Out]], items: Sequence[In]) -> list[Out]:
        """One forward pass, observed in the metrics and counted in the worker's record."""
        start = time.perf_counter()
        outputs = predict(items)
        observe_forward(len(items), time.perf_counter() - start)
        try:
            self.redis.hincrby(keyspace.WORKER.format(name=self.name), "forward_passes", 1)
        except redis.RedisError:
            log.warning("could not record forward pass statistics", exc_info=True)
        return outputs

    @property
    def faces(self) -> FaceDetector:
        """The face detector of ID-photo jobs, loaded on the first one (its networks are small)."""
        with self._faces_lock:
            if self._faces is None:
                self._faces = FaceDetector()
            return self._faces

    def announce(self) -> None:
        """Record that this worker has its model loaded, which checkpoint on which device, its engine and
        precision with the reasons and self-check figures, and its process (read by readiness checks,
        ``backdrop serve`` and tests)."""
        key = keyspace.WORKER.format(name=self.name)
        loaded = {
            **self.runner.describe(),
            "device": str(self.runner.device),
            "precision": self.runner.precision.value,
            "model_path": str(self.settings.model_path),
            "pid": os.getpid(),
        }
        self.redis.hset(key, mapping=loaded)
        self.redis.hsetnx(key, "forward_passes", 0)
        self.redis.expire(key, self.settings.job_ttl_seconds)

    def close(self) -> None:
        self.presence.stop()
        self.retention.stop()
        if self.reconciler is not None:
            self.reconciler.stop()
        self.batcher.close(timeout=60)
        if self.device_batcher is not None:
            self.device_batcher.close(timeout=60)
        if self.finishing_batcher is not None:
            self.finishing_batcher.close(timeout=60)
        self.redis.delete(keyspace.WORKER.format(name=self.name))
        self.redis.close()
