"""Batches: many photos with shared options, on the lower-priority batch queue; counts, pages, zip."""

from __future__ import annotations

import itertools

from flask import Response, jsonify, request, stream_with_context, url_for
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field, ValidationError

from api import submissions
from api.archives import stream_batch_zip
from api.auth import current_owner
from api.context import ApiContext, ctx
from api.schemas import (
    AUTHENTICATED,
    DOWNLOAD,
    IDEMPOTENT_REPLAYED,
    LOCATION,
    BatchForm,
    BatchHeaders,
    BatchJson,
    BatchModel,
    binary_response,
    errors,
    idempotency_key,
    json_response,
    no_content,
    operation_id,
)
from common.batches import Batch
from common.errors import InvalidOption, NotFound
from common.jobs import is_record_id
from common.options import describe_validation_error
from common.queue import notify_batch_completed

batches = APIBlueprint(
    "batches",
    __name__,
    url_prefix="/v1",
    abp_tags=[Tag(name="batches")],
    abp_security=[{"bearer": []}, {"apiKey": []}],
    operation_id_callback=operation_id,
)

MAX_PAGE_SIZE = 500
# The zip's type, or plain bytes for a client that asks for application/octet-stream (Accept).
ZIP_MEDIA_TYPES = ["application/zip", "application/octet-stream"]


class BatchPath(BaseModel):
    batch_id: str = Field(description="the batch's id")


class BatchQuery(BaseModel):
    page: int = Field(default=1, ge=1, le=2**63 - 1, description="the page of jobs, from 1")
    page_size: int = Field(default=100, ge=1, le=MAX_PAGE_SIZE, description="jobs per page")


def view(api: ApiContext, batch: Batch, page: int, page_size: int) -> Response:
    start = (page - 1) * page_size
    members = api.batches.jobs_of(batch.id, start, start + page_size - 1) if start < batch.total else []
    jobs = [job for job in members if job is not None]
    model = BatchModel.of(
        batch, api.batches.counts(batch.id), jobs, api.storage, api.settings, page=page, page_size=page_size
    )
    return jsonify(model.model_dump(mode="json"))


def owned_batch(api: ApiContext, batch_id: str) -> Batch:
    batch = api.batches.get(batch_id) if is_record_id(batch_id) else None
    if batch is None or batch.owner != current_owner():
        raise NotFound(f"no batch {batch_id!r} (unknown, or expired)")
    return batch


@batches.post(
    "/batches",
    responses={
        202: json_response(
            BatchModel,
            "accepted: the batch and the first page of its jobs (or an idempotent replay of an earlier request)",
            headers={**LOCATION, **IDEMPOTENT_REPLAYED},
        ),
        **errors(400, 404, 408, 409, 413, 422, *AUTHENTICATED),
    },
)
def create_batch(form: BatchForm, header: BatchHeaders) -> Response:  # type: ignore[valid-type]
    """Create a batch: repeated `images` files (multipart), or `image_urls` and `keys` (JSON), with
    shared options. Its jobs run on the batch queue, after any waiting single job. A request that fails
    (503) leaves nothing of its batch to run; with an `Idempotency-Key`, a retry returns the batch the
    first request made instead of a second one."""
    api = ctx()
    if request.is_json:
        try:
            body = BatchJson.model_validate(request.get_json())
        except ValidationError as exc:
            raise InvalidOption(describe_validation_error(exc)) from None
        job_requests = submissions.batch_requests_from_json(body, api, current_owner())
    else:
        job_requests = submissions.batch_requests_from_uploads(form, api, request.form)
    key = idempotency_key(header.idempotency_key)
    batch, replayed = submissions.submit_batch(api, current_owner(), job_requests, key)
    response = view(api, batch, 1, MAX_PAGE_SIZE)
    response.status_code = 202
    response.headers["Location"] = url_for("batches.get_batch", batch_id=batch.id)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@batches.get(
    "/batches/<batch_id>",
    responses={
        200: json_response(BatchModel, "the batch and one page of its jobs"),
        **errors(404, 422, *AUTHENTICATED),
    },
)
def get_batch(path: BatchPath, query: BatchQuery) -> Response:
    """Counts per status and one page of the batch's jobs, in submission order."""
    api = ctx()
    return view(api, owned_batch(api, path.batch_id), query.page, query.page_size)


@batches.post(
    "/batches/<batch_id>/cancel",
    responses={
        200: json_response(BatchModel, "the batch, its unfinished jobs canceled"),
        **errors(404, *AUTHENTICATED),
    },
)
def cancel_batch(path: BatchPath) -> Response:
    """Cancel every job of the batch that has not finished."""
    api = ctx()
    batch = owned_batch(api, path.batch_id)
    api.batches.cancel_unfinished(batch.id)
    notify_batch_completed(api.celery, api.batches, batch.id)
    return view(api, batch, 1, MAX_PAGE_SIZE)


@batches.delete(
    "/batches/<batch_id>",
    responses={
        204: no_content("deleted: the batch, and each job's record, upload and results"),
        **errors(404, *AUTHENTICATED),
    },
)
def delete_batch(path: BatchPath) -> tuple[str, int]:
    """Delete a batch: cancel its unfinished jobs, then remove every job's upload, results and record,
    and the batch. An upload that the batch named by its key (`POST /v1/uploads`) is the caller's own and
    stays (its jobs ran on copies of it). When the storage fails (503), no record is deleted yet: the same
    request again finishes it."""
    api = ctx()
    api.batches.erase(owned_batch(api, path.batch_id), api.storage)
    return "", 204


@batches.get(
    "/batches/<batch_id>/results.zip",
    responses={
        200: binary_response("the zip of the succeeded composites", ZIP_MEDIA_TYPES, headers=DOWNLOAD),
        **errors(404, *AUTHENTICATED),
    },
)
def batch_zip(path: BatchPath) -> Response:
    """The succeeded composites as one zip, in submission order, streamed as it is written (no length
    is known in advance). Each file is named `{index:05d}-{job_id}.{ext}`. A storage failure before the
    first file answers 503; after it the connection is cut, so a zip cut short never ends cleanly."""
    api = ctx()
    batch = owned_batch(api, path.batch_id)
    media_type = request.accept_mimetypes.best_match(ZIP_MEDIA_TYPES, default=ZIP_MEDIA_TYPES[0])
    chunks = stream_batch_zip(api, batch)
    # The first member is read before the answer starts: a storage that fails then is an error answer
    # (503 storage_unavailable); once the zip has started, a failure can only cut the stream short.
    first = next(chunks)
    return Response(
        stream_with_context(itertools.chain([first], chunks)),
        mimetype=media_type,
        headers={"Content-Disposition": f'attachment; filename="{batch.id}.zip"'},
    )
