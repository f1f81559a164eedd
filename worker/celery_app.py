"""The Celery app of the worker: ``celery -A worker.celery_app:app worker --pool threads``.

One process holds one ``WorkerService`` (MODNet loaded and warmed up at start); its pool threads
run the tasks of ``worker.tasks`` in parallel while the batcher groups their network inputs.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Task
from celery.signals import setup_logging, task_postrun, task_prerun, worker_init, worker_shutdown

from common import logging_setup
from common.errors import ModelError
from common.queue import PROCESS_JOB, make_celery
from common.settings import Settings, get_settings
from worker import metrics
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


@setup_logging.connect
def _configure_logging(**_: object) -> None:
    """Our handler instead of Celery's: JSON lines (or text) at BACKDROP_LOG_LEVEL, with job ids."""
    logging_setup.configure_logging(settings)


@worker_init.connect
def _load_model(**_: object) -> None:
    metrics.start_metrics_server(settings)
    try:
        svc = service()
    except ModelError as exc:
        log.critical("cannot start the worker: %s", exc.message)
        # The worker is useless without its model; exit rather than take jobs and fail them.
        os._exit(3)
    runner = svc.runner
    metrics.describe_model(str(runner.device), runner.precision.value, runner.engine.name, settings.model_path.name)
    metrics.describe_precision(runner.choice, str(runner.device))


# The log context bound by each running task (its pool thread's), reset when it ends.
_task_tokens: dict[str, list[Any]] = {}


def _job_of(task: Task | None, args: object) -> str | None:
    """The job id a task is about: the first argument of a job's or a webhook's task."""
    if task is None or not isinstance(args, list | tuple) or not args or not isinstance(args[0], str):
        return None
    return args[0]


@task_prerun.connect
def _task_started(task_id: str = "", task: Task | None = None, args: object = None, **_: object) -> None:
    job_id = _job_of(task, args)
    request_id = getattr(task.request, logging_setup.REQUEST_ID_HEADER, None) if task is not None else None
    context = logging_setup.TaskContext(job_id, request_id if isinstance(request_id, str) else None)
    logging_setup.recent_tasks.remember(task_id, context)
    _task_tokens[task_id] = logging_setup.bind(job_id=context.job_id, request_id=context.request_id)
    if task is not None and task.name == PROCESS_JOB:
        metrics.IN_FLIGHT.inc()


@task_postrun.connect
def _task_ended(
    task_id: str = "", task: Task | None = None, args: object = None, retval: object = None, **_: object
) -> None:
    try:
        if task is not None and task.name == PROCESS_JOB:
            metrics.IN_FLIGHT.dec()
            job_id = _job_of(task, args)
            if job_id is not None and retval in metrics.FINISHED:
                metrics.record_outcome(metrics.read_finished_job(service().jobs.get, job_id), str(retval))
    finally:
        logging_setup.unbind(_task_tokens.pop(task_id, []))


@worker_shutdown.connect
def _close(**_: object) -> None:
    if _service is not None:
        _service.close()
