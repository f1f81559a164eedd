"""The Celery app of the worker: ``celery -A worker.celery_app:app worker --pool threads``.

One process holds one ``WorkerService`` (MODNet loaded and warmed up at start); its pool threads
run the tasks of ``worker.tasks`` in parallel while the batcher groups their network inputs.
"""

from __future__ import annotations

import logging
import os
import threading

from celery.signals import worker_init, worker_shutdown

from common.errors import ModelError
from common.queue import make_celery
from common.settings import Settings, get_settings
from worker.runtime import resolve_device
from worker.service import WorkerService

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
app.conf.update(worker_pool="threads", worker_concurrency=default_concurrency(settings), include=["worker.tasks"])

_service: WorkerService | None = None
_service_lock = threading.Lock()


def service() -> WorkerService:
    """The process's resident service, created on first use."""
    global _service
    with _service_lock:
        if _service is None:
            _service = WorkerService.start(settings, app)
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
