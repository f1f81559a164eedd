"""Jobs: create, poll, cancel, delete. The work of creating one is in ``api.submissions``."""

from __future__ import annotations

from contextlib import suppress

from flask import Response, g, jsonify, url_for
from flask import request as flask_request
from flask_openapi3 import APIBlueprint, Tag

from api import submissions
from api.auth import current_owner
from api.context import ApiContext, ctx
from api.limits import wait_slot
from api.schemas import (
    AUTHENTICATED,
    IDEMPOTENT_REPLAYED,
    LOCATION,
    POLL_AGAIN,
    PREFERENCE_APPLIED,
    JobForm,
    JobHeaders,
    JobModel,
    JobPath,
    errors,
    idempotency_key,
    json_response,
    no_content,
    operation_id,
)
from common.errors import NotFound, RecordDamaged
from common.jobs import Job, JobStatus, TransitionRefused, is_record_id
from common.public import EXAMPLE_JOB
from common.queue import notify, notify_batch_completed
from common.storage import job_prefix

jobs = APIBlueprint(
    "jobs",
    __name__,
    url_prefix="/v1",
    abp_tags=[Tag(name="jobs")],
    abp_security=[{"bearer": []}, {"apiKey": []}],
    operation_id_callback=operation_id,
)

POLL_AFTER_SECONDS = 1


def owned_job(api: ApiContext, job_id: str) -> Job:
    """The caller's job; another key's job is reported as absent (404), never as forbidden. The
    caller's damaged record is ``RecordDamaged`` (410), which only DELETE gets past."""
    absent = NotFound(f"no job {job_id!r} (unknown, deleted, or expired after {api.settings.job_ttl_seconds} s)")
    if not is_record_id(job_id):
        raise absent
    try:
        job = api.jobs.get(job_id)
    except RecordDamaged as exc:
        if exc.owner != current_owner():
            raise absent from None
        raise
    if job is None or job.owner != current_owner():
        raise absent
    return job


def job_response(job: Job, api: ApiContext, status: int) -> Response:
    response = jsonify(JobModel.of(job, api.storage, api.settings).model_dump(mode="json"))
    response.status_code = status
    if not job.status.is_terminal:
        g.retry_after = response.headers["Retry-After"] = str(POLL_AFTER_SECONDS)
    return response


QUEUED_EXAMPLE = {
    **EXAMPLE_JOB,
    "status": "queued",
    "started_at": None,
    "finished_at": None,
    "attempts": 0,
    "results": None,
}
CREATED_HEADERS = {**LOCATION, **PREFERENCE_APPLIED, **IDEMPOTENT_REPLAYED}
PENDING_HEADERS = {**CREATED_HEADERS, "Retry-After": {**POLL_AGAIN["Retry-After"], "required": True}}


@jobs.post(
    "/jobs",
    responses={
        200: json_response(
            JobModel,
            "the job, finished within Prefer: wait=N (or an idempotent replay of a finished job)",
            headers=CREATED_HEADERS,
            example=EXAMPLE_JOB,
        ),
        202: json_response(
            JobModel, "accepted: the job, pending; poll its Location", headers=PENDING_HEADERS, example=QUEUED_EXAMPLE
        ),
        **errors(400, 404, 408, 413, 415, 422, *AUTHENTICATED),
    },
)
def create_job(form: JobForm, header: JobHeaders) -> Response:  # type: ignore[valid-type]
    """Create a job: validate, store the upload, enqueue.
    The answer is 202 with the job and its Location, or 200 when the job finished within `Prefer: wait=N`
    (or the request is an idempotent replay of a finished job)."""
    api = ctx()
    owner = current_owner()
    request = submissions.job_request(form, api, flask_request.files)
    key = idempotency_key(header.idempotency_key)
    body_hash = submissions.fingerprint(request) if key else ""
    # The key is reserved, with the job's id, before anything of the job is written.
    reservation = submissions.reserve(api, owner, key, body_hash) if key else None
    if reservation is not None and reservation.job is not None:
        replayed = reservation.job
        response = job_response(replayed, api, 200 if replayed.status.is_terminal else 202)
        response.headers["Idempotent-Replayed"] = "true"
        response.headers["Location"] = url_for("jobs.get_job", job_id=replayed.id)
        return response
    submissions.check_quota(api, owner)
    job = submissions.enqueue_job(
        api,
        owner,
        request,
        job_id=reservation.job_id if reservation else None,
        max_pending=api.settings.max_pending_jobs,
    )
    if key:
        submissions.confirm(api, owner, key, body_hash, job)
    wait = submissions.requested_wait(api, header.prefer or "")
    applied = wait if wait == 0 else None
    if wait:
        # Past the caps on held requests the preference is ignored (RFC 7240): a 202 at once.
        with wait_slot(api, owner, wait) as granted:
            if granted:
                job = submissions.wait_for_terminal(api, job, wait)
                applied = wait
    response = job_response(job, api, 200 if job.status.is_terminal else 202)
    response.headers["Location"] = url_for("jobs.get_job", job_id=job.id)
    if applied is not None:
        response.headers["Preference-Applied"] = f"wait={applied}"
    return response


@jobs.get(
    "/jobs/<job_id>",
    responses={
        200: json_response(JobModel, "the job", headers=POLL_AGAIN, example=EXAMPLE_JOB),
        **errors(404, 410, *AUTHENTICATED),
    },
)
def get_job(path: JobPath) -> Response:
    """Poll a job; `Retry-After` says when to ask again while it is pending."""
    api = ctx()
    return job_response(owned_job(api, path.job_id), api, 200)


@jobs.post(
    "/jobs/<job_id>/cancel",
    responses={
        200: json_response(JobModel, "the job, canceled unless it had finished"),
        **errors(404, 410, *AUTHENTICATED),
    },
)
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
            notify_batch_completed(api.celery, api.batches, job.batch_id)
    return job_response(job, api, 200)


@jobs.delete(
    "/jobs/<job_id>",
    responses={204: no_content("deleted: the record, the upload and the results"), **errors(404, *AUTHENTICATED)},
)
def delete_job(path: JobPath) -> tuple[str, int]:
    """Delete a job: cancel it if pending, then remove its upload, results and record. A batch's job
    stays counted in its final state (canceled, or failed for a record that could not be read), so
    that its batch still completes."""
    api = ctx()
    job_id = path.job_id
    damage: RecordDamaged | None = None
    try:
        job: Job | None = owned_job(api, job_id)
    except RecordDamaged as exc:
        job, damage = None, exc
    finished = False
    if job is not None and not job.status.is_terminal:
        with suppress(TransitionRefused):
            finished = api.jobs.cancel(job_id)
    elif damage is not None:  # its status can still move, as a worker taking its message would move it
        with suppress(TransitionRefused, RecordDamaged):
            finished = api.jobs.fail(job_id, damage.code, damage.message)
    for prefix in job_prefix(job_id):
        api.storage.delete_prefix(prefix)
    if job is None:
        api.jobs.delete_damaged(job_id, current_owner())
    else:
        api.jobs.delete(job)
    if finished:
        batch_id = job.batch_id if job is not None else damage.batch_id if damage is not None else None
        notify_batch_completed(api.celery, api.batches, batch_id)
    return "", 204
