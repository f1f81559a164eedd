"""``POST /v1/jobs`` (validate, store the upload, enqueue) and ``GET /v1/jobs/<id>`` (poll)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import redis
from flask import Blueprint, Response, jsonify, request, url_for
from kombu.exceptions import OperationalError
from werkzeug.datastructures import FileStorage

from api.context import ApiContext, ctx
from api.errors import NotFound
from common.errors import ImageTooLarge, InvalidInput, InvalidOption, QueueUnavailable
from common.imaging import ImageInfo, probe_image
from common.jobs import InputInfo, Job, JobOptions, JobStatus, new_job_id, now
from common.pipeline import ReplaceOptions
from common.queue import PROCESS_JOB
from common.storage import background_key, input_key

jobs = Blueprint("jobs", __name__, url_prefix="/v1")

FORM_FIELDS = frozenset({"background", "format", "quality", "outputs", "decontaminate"})
FILE_FIELDS = frozenset({"image", "background_image"})
POLL_AFTER_SECONDS = 1
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _read_upload(upload: FileStorage | None, field: str, api: ApiContext) -> tuple[bytes, ImageInfo]:
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


def _parse_options(form: dict[str, list[str]], has_background_image: bool) -> JobOptions:
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
    options = JobOptions(**values)
    if options.background.strip().lower() == "image" and not has_background_image:
        raise InvalidOption("background=image needs a background_image file")
    # Validate now, cheaply, so that a bad option is a 422 here and never a failed job later.
    ReplaceOptions.from_values(
        background="#000" if has_background_image else options.background,
        format=options.format,
        quality=options.quality,
        outputs=options.outputs,
        decontaminate=options.decontaminate,
    )
    options.outputs = sorted({name.strip().lower() for name in options.outputs})
    return options


def job_view(job: Job, api: ApiContext) -> dict[str, Any]:
    """The public JSON of a job: what a client polls."""
    view: dict[str, Any] = {
        "id": job.id,
        "status": job.status.value,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "attempts": job.attempts,
        "input": job.input.model_dump(),
        "options": job.options.model_dump(exclude={"background_image_key"}),
        "results": None,
        "error": job.error.model_dump() if job.error else None,
    }
    if job.status is JobStatus.SUCCEEDED:
        expiry = api.settings.url_expiry_seconds
        expires_at = (now() + timedelta(seconds=expiry)).isoformat()
        view["results"] = {
            name: {
                "url": api.storage.url(
                    result.key, expires_in=expiry, filename=f"{job.id}-{result.key.rsplit('/', 1)[1]}"
                ),
                "expires_at": expires_at,
                "format": result.format,
                "media_type": result.media_type,
                "bytes": result.bytes,
                "width": result.width,
                "height": result.height,
            }
            for name, result in job.results.items()
        }
    return view


def _job_response(job: Job, api: ApiContext, status: int) -> Response:
    response = jsonify(job_view(job, api))
    response.status_code = status
    if not job.status.is_terminal:
        response.headers["Retry-After"] = str(POLL_AFTER_SECONDS)
    return response


@jobs.post("/jobs")
def create_job() -> Response:
    api = ctx()
    unknown_files = sorted(set(request.files) - FILE_FIELDS)
    if unknown_files:
        raise InvalidOption(f"unknown file field(s): {', '.join(unknown_files)}")
    data, info = _read_upload(request.files.get("image"), "image", api)
    background_upload = request.files.get("background_image")
    options = _parse_options(request.form.to_dict(flat=False), background_upload is not None)
    background_data = _read_upload(background_upload, "background_image", api)[0] if background_upload else None

    job_id = new_job_id()
    key = input_key(job_id)
    # The upload is stored before the job is enqueued: the message carries only the id.
    api.storage.put(key, data, "application/octet-stream")
    if background_data is not None:
        options.background_image_key = background_key(job_id)
        api.storage.put(options.background_image_key, background_data, "application/octet-stream")
    input_info = InputInfo(bytes=len(data), format=info.format, width=info.width, height=info.height)
    try:
        job = api.jobs.create(job_id, key, input_info, options)
        api.celery.send_task(PROCESS_JOB, args=[job_id])
    except (redis.RedisError, OperationalError) as exc:
        raise QueueUnavailable(f"the job queue is unavailable, try again later: {exc}") from exc
    response = _job_response(job, api, 202)
    response.headers["Location"] = url_for("jobs.get_job", job_id=job_id)
    return response


@jobs.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    api = ctx()
    job = api.jobs.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r} (unknown, or expired after {api.settings.job_ttl_seconds} s)")
    return _job_response(job, api, 200)
