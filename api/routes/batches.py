"""Batches: many photos with shared options, on the lower-priority batch queue; counts, pages, zip."""

from __future__ import annotations

import tempfile
import zipfile
from contextlib import suppress
from typing import Any

from flask import Response, jsonify, request, send_file, url_for
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from api.auth import current_owner
from api.context import ApiContext, ctx
from api.routes.jobs import JobRequest, check_quota, enqueue_job, parse_options, read_upload
from api.schemas import ERRORS, ErrorDetail, JobModel
from common.batches import Batch, BatchStore, batch_view
from common.errors import InvalidInput, InvalidOption, NotFound
from common.jobs import JobStatus, TransitionRefused
from common.netsafe import check_url
from common.pipeline import file_extension
from common.queue import BATCH_QUEUE, notify_batch_completed
from common.storage import JOB_OBJECT_PREFIXES

batches = APIBlueprint(
    "batches", __name__, url_prefix="/v1", abp_tags=[Tag(name="batches")], abp_security=[{"bearer": []}, {"apiKey": []}]
)

MAX_PAGE_SIZE = 500
ZIP_SPOOL_BYTES = 64 * 2**20


class BatchForm(BaseModel):
    """multipart/form-data: repeated ``images`` files plus the shared options of ``POST /v1/jobs``."""

    model_config = {"extra": "allow"}
    background: str | None = Field(default=None, examples=["blue"])
    format: str | None = None
    quality: int | None = Field(default=None, ge=1, le=100)
    outputs: str | None = None
    decontaminate: bool | None = None
    webhook_url: str | None = Field(default=None, description="receives one signed batch.completed event")


class BatchJson(BaseModel):
    """application/json: photos by URL, or objects already in the bucket, with shared options."""

    image_urls: list[str] = Field(default_factory=list)
    keys: list[str] = Field(default_factory=list, description="object keys in the storage bucket")
    options: dict[str, Any] = Field(default_factory=dict, description="the option fields of POST /v1/jobs")


class BatchPath(BaseModel):
    batch_id: str


class BatchQuery(BaseModel):
    page: int = Field(default=1, ge=1)
    page_size: int = Field(default=100, ge=1, le=MAX_PAGE_SIZE)


class BatchModel(BaseModel):
    id: str
    status: str = Field(description="pending, or completed when every job has finished")
    created_at: str
    expires_at: str
    total: int
    webhook_url: str | None = None
    counts: dict[str, int]
    jobs: list[JobModel]
    page: int
    next_page: int | None
    error: ErrorDetail | None = None


def _store(api: ApiContext) -> BatchStore:
    return BatchStore(api.redis, api.jobs)


def _as_form(options: dict[str, Any]) -> dict[str, list[str]]:
    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return ",".join(str(v) for v in value)
        return str(value)

    return {name: [text(value)] for name, value in options.items()}


def _requests(api: ApiContext) -> list[JobRequest]:
    """One validated job request per photo of the batch."""
    if "webhook_events" in request.form or (
        request.is_json and "webhook_events" in request.get_json().get("options", {})
    ):
        raise InvalidOption("a batch reports one batch.completed event: webhook_events is for single jobs")
    if request.is_json:
        body = BatchJson.model_validate(request.get_json())
        options = parse_options(_as_form(body.options), has_background_image=False)
        found: list[JobRequest] = [JobRequest(None, None, check_url(url), options, None) for url in body.image_urls]
        for key in body.keys:
            if key.startswith(JOB_OBJECT_PREFIXES) or not api.storage.exists(key):
                raise InvalidInput(f"no object {key!r} in the bucket (or it is one of Backdrop's own)")
            found.append(JobRequest(None, None, None, options, None, source_key=key))
        return found
    if set(request.files) - {"images"}:
        raise InvalidOption("a multipart batch takes repeated 'images' files (no background_image)")
    options = parse_options(request.form.to_dict(flat=False), has_background_image=False)
    found = []
    for upload in request.files.getlist("images"):
        try:
            found.append(JobRequest(*read_upload(upload, "images", api), None, options, None))
        except InvalidInput as exc:  # not an image, too large, too small: that job fails, the batch goes on
            found.append(JobRequest(None, None, None, options, None, refused=exc))
    return found


def view(api: ApiContext, batch: Batch, page: int, page_size: int) -> dict[str, Any]:
    return batch_view(_store(api), batch, api.storage, api.settings, page, page_size)


def owned_batch(api: ApiContext, batch_id: str) -> Batch:
    batch = _store(api).get(batch_id)
    if batch is None or batch.owner != current_owner():
        raise NotFound(f"no batch {batch_id!r} (unknown, or expired)")
    return batch


@batches.post("/batches", responses={202: BatchModel, **ERRORS})
def create_batch(form: BatchForm) -> Response:
    """Create a batch: repeated ``images`` files (multipart), or ``image_urls``/``keys`` (JSON), with
    shared options. Its jobs run on the batch queue, after any waiting single job."""
    api = ctx()
    owner = current_owner()
    job_requests = _requests(api)
    if not job_requests:
        raise InvalidInput("a batch needs at least one image")
    if len(job_requests) > api.settings.max_batch_jobs:
        raise InvalidInput(f"a batch holds at most {api.settings.max_batch_jobs} images")
    check_quota(api, owner, adding=len(job_requests))
    # The batch has one webhook (one batch.completed event), not one per job.
    webhook_url = job_requests[0].options.webhook_url
    store = _store(api)
    batch = store.create(owner, len(job_requests), webhook_url)
    for job_request in job_requests:
        job_request.options = job_request.options.model_copy(update={"webhook_url": None})
        job = enqueue_job(api, owner, job_request, batch_id=batch.id, queue=BATCH_QUEUE)
        store.add_job(batch, job.id)
    notify_batch_completed(api.celery, store, batch.id)  # when every photo was refused at once
    response = jsonify(view(api, batch, 1, MAX_PAGE_SIZE))
    response.status_code = 202
    response.headers["Location"] = url_for("batches.get_batch", batch_id=batch.id)
    return response


@batches.get("/batches/<batch_id>", responses={200: BatchModel, **ERRORS})
def get_batch(path: BatchPath, query: BatchQuery) -> Response:
    """Counts per status and one page of the batch's jobs, in submission order."""
    api = ctx()
    return jsonify(view(api, owned_batch(api, path.batch_id), query.page, query.page_size))


@batches.post("/batches/<batch_id>/cancel", responses={200: BatchModel, **ERRORS})
def cancel_batch(path: BatchPath) -> Response:
    """Cancel every job of the batch that has not finished."""
    api = ctx()
    batch = owned_batch(api, path.batch_id)
    for job_id in _store(api).job_ids(batch.id):
        with suppress(TransitionRefused):
            api.jobs.cancel(job_id)
    notify_batch_completed(api.celery, _store(api), batch.id)
    return jsonify(view(api, batch, 1, MAX_PAGE_SIZE))


@batches.get("/batches/<batch_id>/results.zip", responses={200: None, **ERRORS})
def batch_zip(path: BatchPath) -> Response:
    """The succeeded composites as one zip, named ``{index:05d}-{job_id}.{ext}`` in submission order."""
    api = ctx()
    batch = owned_batch(api, path.batch_id)
    spool = tempfile.SpooledTemporaryFile(max_size=ZIP_SPOOL_BYTES)  # noqa: SIM115 - handed to send_file
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_STORED) as archive:
        for index, job in enumerate(_store(api).jobs_of(batch.id)):
            if job is None or job.status is not JobStatus.SUCCEEDED or "composite" not in job.results:
                continue
            result = job.results["composite"]
            archive.writestr(f"{index:05d}-{job.id}.{file_extension(result.format)}", api.storage.get(result.key))
    spool.seek(0)
    return send_file(spool, mimetype="application/zip", as_attachment=True, download_name=f"{batch.id}.zip")
