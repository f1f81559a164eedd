"""One job, from its stored upload to its stored results. Safe to run twice for the same job."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import redis

from common.errors import BackdropError, FetchFailed, InvalidInput, StorageError
from common.imaging import OUTPUT_MEDIA_TYPES
from common.jobs import Job, JobStatus, ResultInfo, TransitionRefused
from common.netsafe import FetchLimits, fetch_bytes
from common.pipeline import (
    OutputKind,
    ReplaceOptions,
    file_extension,
    full_resolution_matte,
    network_input,
    network_input_shape,
    render_outputs,
)
from common.storage import result_key
from worker.replace import decode
from worker.service import WorkerService

log = logging.getLogger(__name__)


class RemoteUnavailable(BackdropError):
    """An ``image_url`` that could not be fetched for a reason that may pass (see FetchFailed.transient)."""

    code = "fetch_failed"
    http_status = 422


# Errors worth retrying: the job itself is fine, a service it needs is not (yet) reachable.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    StorageError,
    redis.ConnectionError,
    redis.TimeoutError,
    RemoteUnavailable,
)

RESULT_NAMES = {OutputKind.COMPOSITE: "composite", OutputKind.CUTOUT: "cutout", OutputKind.MATTE: "matte"}


@dataclass(frozen=True)
class Outcome:
    status: JobStatus | None  # None: nothing done (unknown job, or already finished)
    detail: str = ""


def load_options(job: Job, service: WorkerService) -> ReplaceOptions:
    image = None
    if job.options.background_image_key:
        image = decode(service.storage.get(job.options.background_image_key), service.settings).rgb
    return ReplaceOptions.from_values(
        background=job.options.background,
        format=job.options.format,
        quality=job.options.quality,
        outputs=job.options.outputs,
        decontaminate=job.options.decontaminate,
        background_image=image,
    )


def read_input(job: Job, service: WorkerService) -> bytes:
    """The photo: uploaded to storage, or fetched from its URL with SSRF protection."""
    if job.image_url is None:
        return service.storage.get(job.input_key)
    settings = service.settings
    limits = FetchLimits(
        max_bytes=min(settings.fetch_max_bytes, settings.max_upload_bytes),
        timeout=settings.fetch_timeout_seconds,
        max_redirects=settings.fetch_max_redirects,
    )
    try:
        return fetch_bytes(job.image_url, limits=limits, allow_private=settings.fetch_allow_private)
    except FetchFailed as exc:
        if exc.transient:
            raise RemoteUnavailable(exc.message) from exc
        raise


def process_job(service: WorkerService, job_id: str) -> Outcome:
    """Run one job. Bad input fails the job with its code; transient errors propagate (to be retried)."""
    job = service.jobs.get(job_id)
    if job is None:
        log.warning("job %s has no record (expired or deleted); dropping it", job_id)
        return Outcome(None, "no record")
    if job.status.is_terminal:
        # A redelivered message of a job that finished before its worker died.
        return Outcome(None, f"already {job.status.value}")
    try:
        if not service.jobs.start(job_id):
            return Outcome(None, "no record")
    except TransitionRefused as exc:
        return Outcome(None, str(exc))
    if job.attempts == 0:
        service.notify(job_id, "started")

    try:
        options = load_options(job, service)
        decoded = decode(read_input(job, service), service.settings)
        size = network_input_shape(decoded.height, decoded.width, service.settings)
        batch = service.batcher.submit(network_input(decoded.rgb, size)).result()
        matte = full_resolution_matte(batch.output, decoded)
        outputs = render_outputs(decoded, matte, options)
    except InvalidInput as exc:
        with contextlib.suppress(TransitionRefused):
            if service.jobs.fail(job_id, exc.code, exc.message):
                service.job_finished(job_id)
        return Outcome(JobStatus.FAILED, exc.code)

    results: dict[str, ResultInfo] = {}
    for kind, item in outputs.items.items():
        name = RESULT_NAMES[kind]
        key = result_key(job_id, f"{name}.{file_extension(item.format)}")
        media_type = OUTPUT_MEDIA_TYPES[item.format.value]
        service.storage.put(key, item.data, media_type)  # deterministic key: a rerun overwrites
        results[name] = ResultInfo(
            key=key,
            format=item.format.value,
            media_type=media_type,
            bytes=len(item.data),
            width=item.width,
            height=item.height,
        )
    try:
        recorded = service.jobs.succeed(job_id, results, pass_id=batch.batch_id, pass_size=batch.batch_size)
    except TransitionRefused as exc:
        recorded = False
        if exc.current is not JobStatus.CANCELED:
            return Outcome(None, str(exc))
    if not recorded:
        # Canceled or deleted while it ran: its results must not outlive it.
        for result in results.values():
            service.storage.delete(result.key)
        return Outcome(JobStatus.CANCELED, "results discarded")
    service.job_finished(job_id)
    return Outcome(JobStatus.SUCCEEDED)


def fail_job(service: WorkerService, job_id: str, error: BaseException) -> None:
    """Give up on a job: record why, whatever the error was."""
    if isinstance(error, BackdropError):
        code, message = error.code, error.message
    else:
        code, message = "internal_error", f"{type(error).__name__}: {error}"
    with contextlib.suppress(TransitionRefused):
        if service.jobs.fail(job_id, code, message):
            service.job_finished(job_id)
