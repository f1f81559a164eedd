"""One job, from its stored upload to its stored results. Safe to run twice for the same job."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import numpy as np

from common.backgrounds import BackgroundSpec
from common.errors import BackdropError, InvalidInput, RecordDamaged, WorkerLost
from common.id_report import IdPhotoSummary
from common.jobs import Job, JobStatus, ResultInfo, TransitionRefused
from common.netsafe import FetchLimits, fetch_bytes
from common.pipeline import (
    ResultFile,
    decode,
    finish,
    finish_id_photos,
    id_photo_files,
    id_photo_matte,
    job_peak_bytes,
    pixel_count,
    prepare,
    result_files,
)
from common.storage import result_key
from worker.batcher import Attendee, BatchResult
from worker.device_finishing import FinishingWork
from worker.metrics import observe_stage, timed
from worker.service import WorkerService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: JobStatus | None  # None: nothing done (unknown job, or already finished)
    detail: str = ""


def job_background(job: Job, data: bytes | None, service: WorkerService) -> BackgroundSpec:
    """The background the job asked for, with its uploaded image (``data``) for ``background=image``."""
    try:
        image = decode(data, service.settings).rgb if data is not None else None
    except InvalidInput as exc:  # the decoder's messages say "image": say which
        raise exc.about("background_image") from None
    return job.options.background_spec(image)


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
    return fetch_bytes(job.image_url, limits=limits, allow_private=settings.fetch_allow_private)


def render(
    job: Job, service: WorkerService
) -> tuple[list[ResultFile], list[IdPhotoSummary] | None, BatchResult | None]:
    """The job's result files (and an ID-photo job's summaries), with the forward pass that made the
    matte (None when the photo's own alpha was the matte)."""
    settings = service.settings
    options = job.options
    # From here the job may submit to the batchers: they wait for it while it reads and decodes, until it
    # leaves them after its last batch.
    with service.attendance.attending() as attendee:
        with timed("read"):
            source = read_input(job, service)
            background_data = None
            if not options.is_id_photo and job.background_image_key:
                background_data = service.storage.get(job.background_image_key)
        # Admitted by memory: the estimate comes from the headers, before any pixel is decoded.
        peak = job_peak_bytes(
            pixel_count(source, settings),
            pixel_count(background_data, settings) if background_data is not None else 0,
        )
        # While it waits for memory it cannot join a batch: the batchers do not wait for it meanwhile.
        with service.memory.reserve(peak, while_waiting=attendee.away()):
            return _render_admitted(job, service, source, background_data, attendee)


def _render_admitted(
    job: Job, service: WorkerService, source: bytes, background_data: bytes | None, attendee: Attendee
) -> tuple[list[ResultFile], list[IdPhotoSummary] | None, BatchResult | None]:
    settings = service.settings
    options = job.options
    if not options.is_id_photo:
        background = job_background(job, background_data, service)
        pipeline, device_batcher = service.device_pipeline, service.device_batcher
        finishing = service.finishing_batcher
        if pipeline is not None and device_batcher is not None and finishing is not None:
            # A CUDA worker: on the GPU throughout, the forward pass and the finishing batched across jobs.
            with timed("decode"):
                photo = pipeline.prepare(source)
            with timed("network"):
                on_device = device_batcher.submit(photo.network_input).result()
            finished = finishing.submit(FinishingWork(photo, on_device.output, options, background)).result().output
            attendee.leave()
            # Each job observes the stages of the call that post-processed it (its batch's, when batched)...
            for stage, seconds in finished.stages.items():
                observe_stage(stage, seconds)
            with timed("encode"):  # ...and encodes its own photo, beside the other jobs' encodes
                outputs = finished.result()
            return result_files(outputs), None, on_device
        with timed("decode"):
            prepared = prepare(source, settings)
        with timed("network"):
            forward = service.batcher.submit(prepared.network_input).result()
        attendee.leave()
        finished = finish(prepared, forward.output, options, background, timer=timed)
        return result_files(finished.outputs), None, forward
    with timed("decode"):
        decoded = decode(source, settings)
    passes: list[BatchResult] = []

    def through_batcher(network_input: np.ndarray) -> np.ndarray:
        with timed("network"):
            passes.append(service.batcher.submit(network_input).result())
        return passes[-1].output

    matte = id_photo_matte(decoded, options, settings, through_batcher)
    attendee.leave()
    forward = passes[-1] if passes else None
    with timed("faces"):
        faces = service.faces.detect(decoded.rgb)
    with timed("id_photo"):
        results = finish_id_photos(decoded, matte, faces, options, settings)
    summaries = [IdPhotoSummary.of(result.report, result.sheet_count) for result in results]
    return id_photo_files(results), summaries, forward


def process_job(service: WorkerService, job_id: str, *, delivery: str | None = None) -> Outcome:
    """Run one job. Bad input fails the job with its code; retryable errors propagate (to be retried).

    ``delivery``: an id of the message's delivery to this worker, when it is a new one (not a retry
    message of ours); each is counted once, however often the job is run within it. A job that has had
    ``max_deliveries`` of them without finishing (its worker died each time) fails ``worker_lost``.
    """
    try:
        job = service.jobs.get(job_id)
    except RecordDamaged as exc:
        log.error("job %s: %s; failing it and dropping its message", job_id, exc.message)
        fail_damaged_job(service, job_id, exc)
        return Outcome(None, "damaged record")
    if job is None:
        log.warning("job %s has no record (expired or deleted); dropping it", job_id)
        return Outcome(None, "no record")
    if job.status.is_terminal:
        # A redelivered message of a job that finished before its worker died.
        return Outcome(None, f"already {job.status.value}")
    if delivery is not None:
        counted = service.jobs.add_delivery(job_id, service.settings.max_deliveries, delivery)
        if counted is None:
            return Outcome(None, "no record")
        if not counted:
            lost = WorkerLost(
                f"delivered {service.settings.max_deliveries} times and never finished: its worker was lost each time"
            )
            log.error("job %s: %s", job_id, lost.message)
            with contextlib.suppress(TransitionRefused):
                if service.jobs.fail(job_id, lost.code, lost.message):
                    service.events.job_finished(job_id)
            return Outcome(JobStatus.FAILED, lost.code)
    try:
        if not service.jobs.start(job_id):
            return Outcome(None, "no record")
    except TransitionRefused as exc:
        return Outcome(None, str(exc))
    if job.attempts == 0:
        service.events.job_started(job_id)

    try:
        files, id_photos, forward = render(job, service)
    except InvalidInput as exc:
        if exc.retryable:
            raise
        with contextlib.suppress(TransitionRefused):
            if service.jobs.fail(job_id, exc.code, exc.message):
                service.events.job_finished(job_id)
        return Outcome(JobStatus.FAILED, exc.code)

    results: dict[str, ResultInfo] = {}
    with timed("store"):
        for item in files:
            key = result_key(job_id, f"{item.name}.{item.extension}")
            service.storage.put(key, item.data, item.media_type)  # deterministic key: a rerun overwrites
            results[item.name] = ResultInfo(
                key=key,
                format=item.format,
                media_type=item.media_type,
                bytes=len(item.data),
                width=item.width,
                height=item.height,
            )
    try:
        recorded = service.jobs.succeed(
            job_id,
            results,
            pass_id=forward.batch_id if forward else None,
            pass_size=forward.batch_size if forward else None,
            id_photos=id_photos,
        )
    except TransitionRefused as exc:
        # Canceled or failed meanwhile (the reconciler gave up on it): its results go, as below. Any other
        # state belongs to another run of the job, which writes the same keys: its results stay.
        if exc.current not in (JobStatus.CANCELED, JobStatus.FAILED):
            return Outcome(None, str(exc))
        return _discard(service, results, exc.current)
    if not recorded:  # deleted while it ran
        return _discard(service, results, JobStatus.CANCELED)
    service.events.job_finished(job_id)
    return Outcome(JobStatus.SUCCEEDED)


def _discard(service: WorkerService, results: dict[str, ResultInfo], ended: JobStatus) -> Outcome:
    """The results of a job that ended otherwise while it ran: they must not outlive it."""
    for result in results.values():
        service.storage.delete(result.key)
    return Outcome(ended, "results discarded")


def fail_job(service: WorkerService, job_id: str, error: BaseException) -> None:
    """Give up on a job: record why, whatever the error was."""
    if isinstance(error, BackdropError):
        code, message = error.code, error.message
    else:
        code, message = "internal_error", f"{type(error).__name__}: {error}"
    with contextlib.suppress(TransitionRefused):
        if service.jobs.fail(job_id, code, message):
            service.events.job_finished(job_id)


def fail_damaged_job(service: WorkerService, job_id: str, damage: RecordDamaged) -> None:
    """A record that cannot be read cannot run, but its status can still move: failed, it leaves its
    owner's pending jobs and counts as finished in its batch, which can then complete."""
    with contextlib.suppress(TransitionRefused, RecordDamaged):
        if service.jobs.fail(job_id, damage.code, damage.message) and damage.batch_id:
            service.events.batch_member_finished(damage.batch_id)
