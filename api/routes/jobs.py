"""Jobs: create (validate, store the upload, enqueue), poll, cancel, delete."""

from __future__ import annotations

import hashlib
import json
import re
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import redis
from flask import Response, g, jsonify, request, url_for
from flask_openapi3 import APIBlueprint, Tag
from kombu.exceptions import OperationalError
from werkzeug.datastructures import FileStorage

from api.auth import current_owner
from api.context import ApiContext, ctx
from api.schemas import ERRORS, JobForm, JobHeaders, JobModel, JobPath
from common.batches import BatchStore
from common.errors import (
    IdempotencyConflict,
    ImageTooLarge,
    InvalidInput,
    InvalidOption,
    NotFound,
    QueueUnavailable,
    TooManyPending,
)
from common.imaging import ImageInfo, probe_image
from common.job_view import job_view
from common.jobs import KEY_PREFIX, InputInfo, Job, JobOptions, JobStatus, TransitionRefused, new_job_id
from common.netsafe import check_url
from common.pipeline import ReplaceOptions
from common.queue import INTERACTIVE_QUEUE, PROCESS_JOB, notify, notify_batch_completed
from common.storage import background_key, input_key, job_prefix

jobs = APIBlueprint(
    "jobs", __name__, url_prefix="/v1", abp_tags=[Tag(name="jobs")], abp_security=[{"bearer": []}, {"apiKey": []}]
)

FORM_FIELDS = frozenset(
    {"background", "format", "quality", "outputs", "decontaminate", "image_url", "webhook_url", "webhook_events"}
)
FILE_FIELDS = frozenset({"image", "background_image"})
POLL_AFTER_SECONDS = 1
IDEMPOTENCY_KEY = KEY_PREFIX + "idempotency:{owner}:{key}"
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_WAIT = re.compile(r"(?:^|[\s,;])wait=(\d+)")


@dataclass
class JobRequest:
    """A validated request to create one job."""

    image: bytes | None
    info: ImageInfo | None
    image_url: str | None
    options: JobOptions
    background_image: bytes | None
    source_key: str | None = None  # an object already in the bucket, instead of an upload or a URL
    refused: InvalidInput | None = None  # a batch item that failed validation: recorded as a failed job


def read_upload(upload: FileStorage | None, field: str, api: ApiContext) -> tuple[bytes, ImageInfo]:
    if upload is None:
        raise InvalidInput(f"missing the multipart file field {field!r}")
    data = upload.read(api.settings.max_upload_bytes + 1)
    if len(data) > api.settings.max_upload_bytes:
        raise ImageTooLarge(f"{field} is larger than {api.settings.max_upload_bytes} bytes")
    info = probe_image(data, max_pixels=api.settings.max_image_pixels, min_side=api.settings.min_image_side)
    return data, info


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidOption(f"{name} must be true or false, got {value!r}")


def parse_options(form: dict[str, list[str]], has_background_image: bool) -> JobOptions:
    """Shared options of a job (or of every job of a batch), validated cheaply now so that a bad
    option is a 422 here and never a failed job later."""
    unknown = sorted(set(form) - FORM_FIELDS)
    if unknown:
        raise InvalidOption(f"unknown field(s): {', '.join(unknown)}; accepted: {', '.join(sorted(FORM_FIELDS))}")
    values: dict[str, Any] = {}
    if "background" in form:
        values["background"] = form["background"][0]
    if has_background_image and values.setdefault("background", "image") != "image":
        raise InvalidOption("background_image is only used with background=image")
    if "format" in form and form["format"][0]:
        values["format"] = form["format"][0]
    if "quality" in form:
        try:
            values["quality"] = int(form["quality"][0])
        except ValueError:
            raise InvalidOption(f"quality must be an integer, got {form['quality'][0]!r}") from None
    if "outputs" in form:
        values["outputs"] = [name for value in form["outputs"] for name in value.split(",") if name.strip()]
    if "decontaminate" in form:
        values["decontaminate"] = _parse_bool("decontaminate", form["decontaminate"][0])
    if form.get("webhook_url", [""])[0]:
        values["webhook_url"] = check_url(form["webhook_url"][0])
    if "webhook_events" in form:
        events = sorted({e.strip() for v in form["webhook_events"] for e in v.split(",") if e.strip()})
        if not set(events) <= {"started", "completed"} or not events:
            raise InvalidOption("webhook_events: a comma-separated list of 'started' and 'completed'")
        values["webhook_events"] = events
    options = JobOptions(**values)
    if options.background.strip().lower() == "image" and not has_background_image:
        raise InvalidOption("background=image needs a background_image file")
    ReplaceOptions.from_values(
        background="#000" if has_background_image else options.background,
        format=options.format,
        quality=options.quality,
        outputs=options.outputs,
        decontaminate=options.decontaminate,
    )
    options.outputs = sorted({name.strip().lower() for name in options.outputs})
    return options


def read_job_request(api: ApiContext) -> JobRequest:
    unknown_files = sorted(set(request.files) - FILE_FIELDS)
    if unknown_files:
        raise InvalidOption(f"unknown file field(s): {', '.join(unknown_files)}")
    form = request.form.to_dict(flat=False)
    image_url = form.pop("image_url", [""])[0] or None
    upload = request.files.get("image")
    if (upload is None) == (image_url is None):
        raise InvalidInput("send exactly one of: an 'image' file, or an 'image_url' field")
    image, info = read_upload(upload, "image", api) if upload is not None else (None, None)
    background_upload = request.files.get("background_image")
    options = parse_options(form, background_upload is not None)
    background = read_upload(background_upload, "background_image", api)[0] if background_upload else None
    return JobRequest(image, info, check_url(image_url) if image_url else None, options, background)


def fingerprint(job_request: JobRequest) -> str:
    """What makes two requests "the same body" for Idempotency-Key (multipart boundaries differ)."""
    digest = hashlib.sha256()
    for part in (
        job_request.image or b"",
        (job_request.image_url or "").encode(),
        job_request.background_image or b"",
        job_request.options.model_dump_json().encode(),
    ):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def check_quota(api: ApiContext, owner: str, adding: int = 1) -> None:
    pending = api.jobs.pending_count(owner)
    if pending + adding > api.settings.max_pending_jobs:
        raise TooManyPending(
            f"{pending} jobs are already queued or processing for this key (limit {api.settings.max_pending_jobs})"
        )


def enqueue_job(
    api: ApiContext, owner: str, job_request: JobRequest, *, batch_id: str | None = None, queue: str = INTERACTIVE_QUEUE
) -> Job:
    """Store the upload, write the record, then send the message (which carries only the job id)."""
    job_id = new_job_id()
    key = job_request.source_key or input_key(job_id)
    options = job_request.options.model_copy()
    if job_request.image is not None and job_request.refused is None:
        api.storage.put(key, job_request.image, "application/octet-stream")
    if job_request.background_image is not None:
        options.background_image_key = background_key(job_id)
        api.storage.put(options.background_image_key, job_request.background_image, "application/octet-stream")
    info = job_request.info
    input_info = (
        InputInfo(bytes=len(job_request.image or b""), format=info.format, width=info.width, height=info.height)
        if info is not None
        else InputInfo(bytes=0, format="", width=0, height=0)
    )
    try:
        job = api.jobs.create(
            job_id, key, input_info, options, owner=owner, batch_id=batch_id, image_url=job_request.image_url
        )
        if job_request.refused is not None:
            # One bad photo of a batch fails alone, with its code, instead of refusing the batch.
            api.jobs.fail(job_id, job_request.refused.code, job_request.refused.message)
            return api.jobs.get(job_id) or job
    except redis.RedisError as exc:
        raise QueueUnavailable(f"the job queue is unavailable, try again later: {exc}") from exc
    try:
        api.celery.send_task(PROCESS_JOB, args=[job_id], queue=queue)
    except (redis.RedisError, OperationalError) as exc:
        # Not enqueued: do not leave a record that would sit "queued" until its TTL.
        with suppress(redis.RedisError):
            api.jobs.delete(job)
        raise QueueUnavailable(f"the job queue is unavailable, try again later: {exc}") from exc
    return job


def owned_job(api: ApiContext, job_id: str) -> Job:
    """The caller's job; another key's job is reported as absent (404), never as forbidden."""
    job = api.jobs.get(job_id)
    if job is None or job.owner != current_owner():
        raise NotFound(f"no job {job_id!r} (unknown, deleted, or expired after {api.settings.job_ttl_seconds} s)")
    return job


def job_response(job: Job, api: ApiContext, status: int) -> Response:
    response = jsonify(job_view(job, api.storage, api.settings))
    response.status_code = status
    if not job.status.is_terminal:
        g.retry_after = response.headers["Retry-After"] = str(POLL_AFTER_SECONDS)
    return response


def requested_wait(api: ApiContext) -> int | None:
    """N of a ``Prefer: wait=N`` header, capped at the configured maximum."""
    match = _WAIT.search(request.headers.get("Prefer", ""))
    return min(int(match.group(1)), api.settings.max_wait_seconds) if match else None


def wait_for_terminal(api: ApiContext, job: Job, seconds: int) -> Job:
    deadline = time.monotonic() + seconds
    while not job.status.is_terminal and time.monotonic() < deadline:
        time.sleep(0.1)
        job = api.jobs.get(job.id) or job
    return job


def _replay(api: ApiContext, owner: str, key: str, body_hash: str) -> Job | None:
    stored = api.redis.get(IDEMPOTENCY_KEY.format(owner=owner, key=key))
    if stored is None:
        return None
    original = json.loads(stored)
    if original["fingerprint"] != body_hash:
        raise IdempotencyConflict("this Idempotency-Key was used with a different request body")
    job = api.jobs.get(original["job_id"])
    if job is None:
        raise NotFound("the job created with this Idempotency-Key no longer exists")
    return job


@jobs.post("/jobs", responses={200: JobModel, 202: JobModel, **ERRORS})
def create_job(form: JobForm, header: JobHeaders) -> Response:
    """Create a job: validate, store the upload, enqueue; 202 with the job and a Location header
    (200 when it finished within ``Prefer: wait=N``, or an idempotent replay of a finished job)."""
    api = ctx()
    owner = current_owner()
    job_request = read_job_request(api)
    idempotency_key = request.headers.get("Idempotency-Key", "").strip()[:200] or None
    body_hash = fingerprint(job_request) if idempotency_key else ""
    replayed = _replay(api, owner, idempotency_key, body_hash) if idempotency_key else None
    if replayed is not None:
        response = job_response(replayed, api, 200 if replayed.status.is_terminal else 202)
        response.headers["Idempotent-Replayed"] = "true"
        return response
    check_quota(api, owner)
    job = enqueue_job(api, owner, job_request)
    if idempotency_key:
        record = json.dumps({"job_id": job.id, "fingerprint": body_hash})
        if not api.redis.set(
            IDEMPOTENCY_KEY.format(owner=owner, key=idempotency_key), record, nx=True, ex=IDEMPOTENCY_TTL_SECONDS
        ):
            # A concurrent request with the same key won: answer with its job (ours still runs).
            replayed = _replay(api, owner, idempotency_key, body_hash)
            job = replayed or job
    wait = requested_wait(api)
    if wait:
        job = wait_for_terminal(api, job, wait)
    response = job_response(job, api, 200 if job.status.is_terminal else 202)
    response.headers["Location"] = url_for("jobs.get_job", job_id=job.id)
    if wait is not None:
        response.headers["Preference-Applied"] = f"wait={wait}"
    return response


@jobs.get("/jobs/<job_id>", responses={200: JobModel, **ERRORS})
def get_job(path: JobPath) -> Response:
    """Poll a job; ``Retry-After`` says when to ask again while it is pending."""
    api = ctx()
    return job_response(owned_job(api, path.job_id), api, 200)


@jobs.post("/jobs/<job_id>/cancel", responses={200: JobModel, **ERRORS})
def cancel_job(path: JobPath) -> Response:
    """Cancel: a queued job never runs; a running one is marked canceled and its results are discarded."""
    api = ctx()
    job_id = path.job_id
    job = owned_job(api, job_id)
    if not job.status.is_terminal:
        with suppress(TransitionRefused):  # it finished meanwhile
            api.jobs.cancel(job_id)
        job = owned_job(api, job_id)
        if job.status is JobStatus.CANCELED:
            notify(api.celery, job, "completed")
            notify_batch_completed(api.celery, BatchStore(api.redis, api.jobs), job.batch_id)
    return job_response(job, api, 200)


@jobs.delete("/jobs/<job_id>", responses={204: None, **ERRORS})
def delete_job(path: JobPath) -> tuple[str, int]:
    """Delete a job: cancel it if pending, then remove its upload, results and record."""
    api = ctx()
    job_id = path.job_id
    job = owned_job(api, job_id)
    if not job.status.is_terminal:
        with suppress(TransitionRefused):
            api.jobs.cancel(job_id)
    for prefix in job_prefix(job_id):
        api.storage.delete_prefix(prefix)
    api.jobs.delete(job)
    return "", 204
