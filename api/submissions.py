"""Turning validated requests into queued jobs: uploads, options, quota, idempotency and enqueueing.

The route functions hand over their validated request models; everything between "the request is
well-formed" and "the job is queued" happens here, for single jobs and batches alike.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

import redis
from kombu.exceptions import OperationalError
from pydantic import BaseModel
from redis.lock import Lock
from werkzeug.datastructures import FileStorage, MultiDict

from api.context import ApiContext
from common import keyspace
from common.batches import BATCH_WRITE_LEASE_SECONDS, Batch, WithdrawnBatch
from common.errors import (
    IdempotencyConflict,
    IdempotencyInProgress,
    ImageTooLarge,
    InvalidInput,
    InvalidOption,
    NotFound,
    ObjectNotFound,
    QueueUnavailable,
    StorageError,
    TooManyPending,
)
from common.imaging import ImageInfo, check_encodable, probe_image
from common.jobs import InputInfo, Job, JobExists, new_job_id
from common.netsafe import check_url
from common.options import JobOptions, OutputKind, Surface
from common.queue import BATCH_QUEUE, INTERACTIVE_QUEUE, notify_batch_completed, send_job
from common.storage import background_key, input_key, is_owned_by, validate_key

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
# A batch's storage requests in flight together: the lookups of a JSON batch's keys, the uploads of a
# multipart batch's photos (on S3 each is a request, and thousands one after another keep a client
# waiting for minutes).
STORAGE_REQUESTS_AT_ONCE = 16
BATCH_WRITE_CHUNK = 256  # a batch's records written in one round trip, before their messages are sent
log = logging.getLogger(__name__)
_WAIT = re.compile(r"(?:^|[\s,;])wait=(\d+)")
_IMAGE_BACKGROUND = "image"


@dataclass(frozen=True)
class Upload:
    """An uploaded image, left where the request spooled it (``api.spool``): never read whole into memory."""

    stream: BinaryIO
    size: int
    info: ImageInfo

    def store(self, api: ApiContext, key: str) -> None:
        self.stream.seek(0)
        api.storage.put_file(key, self.stream, "application/octet-stream")

    def digest(self) -> bytes:
        return _sha256(self.stream)


def _sha256(stream: BinaryIO) -> bytes:
    """The SHA-256 of a spooled upload's bytes, read from its start in chunks."""
    stream.seek(0)
    return hashlib.file_digest(stream, "sha256").digest()


@dataclass(frozen=True)
class JobRequest:
    """A validated request to create one job."""

    options: JobOptions
    image: Upload | None = None
    image_url: str | None = None
    background_image: Upload | None = None
    source_key: str | None = None  # one of the caller's uploads, copied to the job's input when accepted
    refused: InvalidInput | None = None  # a batch item that failed validation: recorded as a failed job
    refused_digest: bytes = b""  # a refused upload's SHA-256 (its bytes are not kept), for Idempotency-Key


def _file_part(upload: object, field: str) -> FileStorage:
    """``upload`` when it is a file part; a text field of that name is refused, not read as a photo."""
    if upload is None:
        raise InvalidInput(f"missing the multipart file field {field!r}")
    if not isinstance(upload, FileStorage):
        raise InvalidInput(f"{field!r} must be a file part (with a filename), not a text field")
    return upload


def read_upload(upload: FileStorage | None, field: str, api: ApiContext) -> Upload:
    """An uploaded image and what its header says (read from the spool, only as far as the header
    goes); refused when too large or not an image."""
    stream = _file_part(upload, field).stream
    size = stream.seek(0, io.SEEK_END)
    if size > api.settings.max_upload_bytes:
        raise ImageTooLarge(f"{field} is larger than {api.settings.max_upload_bytes} bytes")
    stream.seek(0)
    try:
        info = probe_image(stream, max_pixels=api.settings.max_image_pixels, min_side=api.settings.min_image_side)
    except InvalidInput as exc:
        if field != "background_image":
            raise
        raise exc.about(field) from None  # the probe's messages say "image": say which
    return Upload(stream, size, info)


def check_outputs(options: JobOptions, info: ImageInfo) -> None:
    """``ImageTooLarge`` at once for a photo its composite's format cannot hold (found by the worker
    otherwise, after the network pass). An ID photo's size is its spec's."""
    if not options.is_id_photo and OutputKind.COMPOSITE in options.output_kinds:
        check_encodable(info.width, info.height, options.composite_format.value)


def options_of(form: BaseModel, surface: Surface, *, has_background_image: bool = False) -> JobOptions:
    """The job options a validated request model carries (only the fields the client sent)."""
    values: dict[str, Any] = form.model_dump(include=set(JobOptions.names(surface)), exclude_unset=True)
    if has_background_image:
        values.setdefault("background", _IMAGE_BACKGROUND)
        if str(values["background"]).strip().lower() != _IMAGE_BACKGROUND:
            raise InvalidOption("background_image is only used with background=image")
    elif str(values.get("background", "")).strip().lower() == _IMAGE_BACKGROUND:
        raise InvalidOption("background=image needs a background_image file")
    return JobOptions.parse(values, surface)


def job_request(form: Any, api: ApiContext, files: MultiDict[str, FileStorage]) -> JobRequest:
    """The request of ``POST /v1/jobs`` from its validated form: exactly one photo, valid options.
    ``files``: the request's file parts, where a second photo or background would go unseen in ``form``."""
    for field in ("image", "background_image"):
        if len(files.getlist(field)) > 1:
            raise InvalidInput(f"send one {field!r} file, not {len(files.getlist(field))}")
    image_url = form.image_url or None
    if (form.image is None) == (image_url is None):
        raise InvalidInput("send exactly one of: an 'image' file, or an 'image_url' field")
    image = read_upload(form.image, "image", api) if form.image is not None else None
    options = options_of(form, Surface.JOB, has_background_image=form.background_image is not None)
    if image is not None:
        check_outputs(options, image.info)
    background = read_upload(form.background_image, "background_image", api) if form.background_image else None
    return JobRequest(options, image, check_url(image_url) if image_url else None, background_image=background)


def batch_requests_from_uploads(form: Any, api: ApiContext, texts: MultiDict[str, str]) -> list[JobRequest]:
    """One request per ``images`` file; a photo that is not an image (or too large or small) fails alone.
    ``texts``: the request's text fields, where an ``images`` part sent as text would go unseen in ``form``."""
    if texts.getlist("images"):  # the request's fault, not one bad photo's
        raise InvalidInput("every 'images' part must be a file part (with a filename), not a text field")
    options = options_of(form, Surface.BATCH)
    uploads = [_file_part(upload, "images") for upload in form.images]
    found = []
    for upload in uploads:
        try:
            image = read_upload(upload, "images", api)
            check_outputs(options, image.info)
            found.append(JobRequest(options, image))
        except InvalidInput as exc:
            found.append(JobRequest(options, refused=exc, refused_digest=_sha256(upload.stream)))
    return found


def batch_requests_from_json(body: Any, api: ApiContext, owner: str) -> list[JobRequest]:
    """One request per URL or bucket key of a JSON batch; every URL and key is checked first.

    A key must name one of the caller's own uploads (``POST /v1/uploads``): any other key, present or
    not, gets the same ``404``, so that the answer tells nothing about the rest of the bucket.
    """
    options = options_of(body.options, Surface.BATCH)
    found = [JobRequest(options, image_url=check_url(url)) for url in body.image_urls]
    for key in body.keys:
        try:
            validate_key(key)
        except ValueError as exc:
            raise InvalidInput(f"{key!r} is not an object key: {exc}") from None
    for index, (key, size) in enumerate(zip(body.keys, _owned_upload_sizes(api, owner, body.keys), strict=True)):
        if size is None:  # one answer for "absent" and "not yours": it tells nothing of other objects
            raise NotFound(f"keys[{index}] is no upload of this API key (its keys come from POST /v1/uploads)")
        refused = None
        if size > api.settings.max_upload_bytes:
            refused = ImageTooLarge(f"{key} is larger than {api.settings.max_upload_bytes} bytes")
        found.append(JobRequest(options, source_key=key, refused=refused))
    return found


def _owned_upload_sizes(api: ApiContext, owner: str, keys: Sequence[str]) -> list[int | None]:
    """``_owned_upload_size`` of each key, ``STORAGE_REQUESTS_AT_ONCE`` at a time."""
    if len(keys) <= 1:
        return [_owned_upload_size(api, owner, key) for key in keys]
    with ThreadPoolExecutor(min(STORAGE_REQUESTS_AT_ONCE, len(keys)), thread_name_prefix="key-check") as pool:
        return list(pool.map(lambda key: _owned_upload_size(api, owner, key), keys))


def _owned_upload_size(api: ApiContext, owner: str, key: str) -> int | None:
    """The size of ``key`` when it is one of ``owner``'s uploads; None when it is absent or not theirs."""
    if not is_owned_by(key, owner):
        return None
    try:
        return api.storage.size(key)
    except ObjectNotFound:
        return None


def fingerprint(request: JobRequest) -> str:
    """What makes two requests "the same body" for Idempotency-Key (multipart boundaries differ)."""
    digest = hashlib.sha256()
    for upload in (request.image, request.background_image):
        digest.update(upload.digest() if upload is not None else hashlib.sha256(b"").digest())
    for part in ((request.image_url or "").encode(), request.options.model_dump_json().encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def check_quota(api: ApiContext, owner: str, adding: int = 1) -> None:
    pending = api.jobs.pending_count(owner)
    if pending + adding > api.settings.max_pending_jobs:
        raise TooManyPending(
            f"{pending} jobs are already queued or processing for this key (limit {api.settings.max_pending_jobs})"
        )


def enqueue_job(
    api: ApiContext,
    owner: str,
    request: JobRequest,
    *,
    job_id: str | None = None,
    max_pending: int = 0,
) -> Job:
    """Store the upload, write the record, then send the message (which carries only the job id).
    ``max_pending``: the owner's quota, checked atomically with the write of the record (0: no limit).

    ``job_id``: the id an Idempotency-Key reserved; when a concurrent request with that key wrote the
    record first, that record is the answer and no second message is sent. A crash after the record
    and before the message leaves a queued job with no message, which the workers' reconciler enqueues.
    """
    job = _stored_record(api, owner, request, job_id or new_job_id())
    try:
        api.jobs.insert(job, max_pending=max_pending)
    except TooManyPending:
        _delete_uploads(api, [job])  # the refused job's upload must not linger until retention
        raise
    except JobExists:
        existing = api.jobs.get(job.id)
        if existing is None:
            raise QueueUnavailable("the job was being created by another request; try again") from None
        return existing
    except redis.RedisError as exc:
        raise QueueUnavailable(f"the job queue is unavailable, try again later: {exc}") from exc
    if request.refused is not None:
        return _refused(api, job, request.refused)
    try:
        _send(api, [job], INTERACTIVE_QUEUE)
    except QueueUnavailable:
        # Its record was deleted, and nothing names its photo now; a record that stayed (Redis itself
        # failed) is the reconciler's to send later, with its photo.
        with suppress(redis.RedisError, StorageError):
            if not api.redis.exists(api.jobs.key(job.id)):
                _delete_uploads(api, [job])
        raise
    return job


def enqueue_batch(
    api: ApiContext,
    owner: str,
    requests: list[JobRequest],
    *,
    batch_id: str | None = None,
    writer: Lock | None = None,
) -> Batch:
    """A batch record and one job per request on the batch queue; one webhook for the whole batch.

    The records are written ``BATCH_WRITE_CHUNK`` at a time, each chunk in one round trip with its
    entries in the batch's job list, and then its messages are sent: as for one job, a crash between a
    record and its message leaves a queued job that the workers' reconciler enqueues. When the request
    fails part-way (the broker, Redis or storage), what was written of the batch is withdrawn: its
    client is told the batch failed and never learns its id.

    ``batch_id`` and ``writer``: the id an Idempotency-Key reserved, and the hold on that key, renewed
    before each chunk."""
    if not requests:
        raise InvalidInput("a batch needs at least one image")
    if len(requests) > api.settings.max_batch_jobs:
        raise InvalidInput(f"a batch holds at most {api.settings.max_batch_jobs} images")
    check_quota(api, owner, adding=len(requests))
    batch = api.batches.create(owner, len(requests), requests[0].options.webhook_url, batch_id=batch_id)
    try:
        _write_batch_jobs(api, owner, batch, requests, writer)
        api.batches.written(batch.id)
    except WithdrawnBatch as exc:  # this request went without progress too long, and was taken for dead
        withdraw_batch(api, batch)
        raise QueueUnavailable("the batch took too long to write and was withdrawn; try again") from exc
    except Exception:
        withdraw_batch(api, batch)
        raise
    notify_batch_completed(api.celery, api.batches, batch.id)  # when every photo was refused at once
    return batch


def _write_batch_jobs(
    api: ApiContext, owner: str, batch: Batch, requests: list[JobRequest], writer: Lock | None
) -> None:
    """The chunks of a batch, one after another; within a chunk the photos are stored
    ``STORAGE_REQUESTS_AT_ONCE`` at a time, then the records written, then the messages sent."""
    uploads = sum(_stores_objects(request) for request in requests)
    # Nothing to store (image URLs): the records are made in this thread.
    pool = (
        ThreadPoolExecutor(min(STORAGE_REQUESTS_AT_ONCE, uploads), thread_name_prefix="batch-store")
        if uploads
        else None
    )
    try:
        for start in range(0, len(requests), BATCH_WRITE_CHUNK):
            if writer is not None:
                writer.extend(BATCH_WRITE_LEASE_SECONDS, replace_ttl=True)  # LockNotOwnedError once another took over
            if start:
                api.batches.progress(batch.id)  # WithdrawnBatch once taken for dead (create was the first sign)
            _write_chunk(api, owner, batch, requests[start : start + BATCH_WRITE_CHUNK], pool)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # after a failure, the photos not yet stored are not


def _write_chunk(
    api: ApiContext, owner: str, batch: Batch, chunk: list[JobRequest], pool: ThreadPoolExecutor | None
) -> None:
    def stored(request: JobRequest) -> Job:
        unhooked = replace(request, options=request.options.model_copy(update={"webhook_url": None}))
        return _stored_record(api, owner, unhooked, new_job_id(), batch_id=batch.id)

    jobs = list(pool.map(stored, chunk)) if pool is not None else [stored(request) for request in chunk]
    try:
        api.jobs.insert_many(jobs, max_pending=api.settings.max_pending_jobs)
        api.batches.add_jobs(batch, [job.id for job in jobs])
    except TooManyPending:  # another request filled the quota meanwhile: the batch is withdrawn
        with suppress(StorageError):  # this chunk's photos, which no record names, go too
            _delete_uploads(api, jobs)
        raise
    except redis.RedisError as exc:
        raise QueueUnavailable(f"the job queue is unavailable, try again later: {exc}") from exc
    sendable = []
    for request, job in zip(chunk, jobs, strict=True):
        if request.refused is not None:
            _refused(api, job, request.refused)
        else:
            sendable.append(job)
    _send(api, sendable, BATCH_QUEUE)


def withdraw_batch(api: ApiContext, batch: Batch) -> None:
    """``BatchStore.withdraw``: nothing of a batch whose request failed part-way runs. Best effort: when
    Redis itself is what failed, the batch stays among those being written, and the workers' reconciler
    withdraws it once its request has gone ``BATCH_WRITE_LEASE_SECONDS`` without progress."""
    try:
        canceled = api.batches.withdraw(batch.id, api.storage)
    except redis.RedisError as exc:
        log.error("batch %s failed part-way and is left to the reconciler to withdraw (%s)", batch.id, exc)
    else:
        log.warning("batch %s failed part-way: withdrawn, %d jobs canceled", batch.id, canceled)


def _stored_record(api: ApiContext, owner: str, request: JobRequest, job_id: str, batch_id: str | None = None) -> Job:
    """The request's uploads stored under the job's keys, and its record, not written yet. A named
    upload is copied: the job's photo is then the one checked, whatever becomes of the upload, and is
    retained from the job's acceptance, not from the upload's own time."""
    key = input_key(job_id)
    if request.refused is None:
        if request.image is not None:
            request.image.store(api, key)
        elif request.source_key is not None:
            try:
                api.storage.copy(request.source_key, key)
            except ObjectNotFound:
                raise NotFound(f"{request.source_key} was deleted while the batch was written") from None
    background = None
    if request.background_image is not None:
        background = background_key(job_id)
        request.background_image.store(api, background)
    image = request.image
    input_info = (
        InputInfo(bytes=image.size, format=image.info.format, width=image.info.width, height=image.info.height)
        if image is not None
        else InputInfo(bytes=None, format=None, width=None, height=None)
    )
    return api.jobs.new(
        job_id,
        key,
        input_info,
        request.options,
        owner=owner,
        batch_id=batch_id,
        image_url=request.image_url,
        background_image_key=background,
    )


def _stores_objects(request: JobRequest) -> bool:
    """Whether the job's acceptance writes to storage: an upload to store, or a named one to copy."""
    return (
        request.image is not None
        or request.background_image is not None
        or (request.source_key is not None and request.refused is None)
    )


def _delete_uploads(api: ApiContext, jobs: Sequence[Job]) -> None:
    """The photos and backgrounds stored for these jobs, in as few requests as the storage allows."""
    api.storage.delete_many([key for job in jobs for key in (job.input_key, job.background_image_key) if key])


def _refused(api: ApiContext, job: Job, refused: InvalidInput) -> Job:
    """One bad photo of a batch fails alone, with its code, instead of refusing the batch."""
    try:
        api.jobs.fail(job.id, refused.code, refused.message)
        return api.jobs.get(job.id) or job
    except redis.RedisError as exc:
        raise QueueUnavailable(f"the job queue is unavailable, try again later: {exc}") from exc


def _send(api: ApiContext, jobs: Sequence[Job], queue: str) -> None:
    """Send the jobs' messages, in order. When one cannot be sent, its record and those of the jobs
    after it are deleted (not left "queued" until their TTL) and the request fails."""
    for index, job in enumerate(jobs):
        _exit_if_asked(api)
        try:
            send_job(api.celery, job.id, queue)
        except (redis.RedisError, OperationalError) as exc:
            with suppress(redis.RedisError):
                for unsent in jobs[index:]:
                    api.jobs.delete(unsent)
            raise QueueUnavailable(f"the job queue is unavailable, try again later: {exc}") from exc


def _exit_if_asked(api: ApiContext) -> None:
    """Tests only: die between a record and its message, as a crashed API process would, once per
    creation of ``test_exit_before_enqueue_file`` (whichever request deletes it first dies)."""
    marker = api.settings.test_exit_before_enqueue_file
    if marker is None:
        return
    try:
        marker.unlink()
    except FileNotFoundError:
        return
    os._exit(70)


@dataclass(frozen=True)
class Reservation:
    """An Idempotency-Key's job: its id, reserved before anything is written, and its record once written."""

    job_id: str
    job: Job | None


def _reservation(api: ApiContext, name: str, field: str, body_hash: str) -> tuple[str, dict[str, Any] | None]:
    """Reserve the key ``name`` for a new id (one SET NX): (the new id, None); or the id and record of the
    reservation an earlier request made. A different body, or a key of the other kind (a job's key sent
    for a batch: ``field`` is ``job_id`` or ``batch_id``), is refused."""
    new_id = new_job_id()
    record = json.dumps({field: new_id, "fingerprint": body_hash, "confirmed": False})
    while not api.redis.set(name, record, nx=True, ex=IDEMPOTENCY_TTL_SECONDS):
        stored = api.redis.get(name)
        if stored is None:
            continue  # expired meanwhile: reserve it afresh
        original = json.loads(stored)
        if original["fingerprint"] != body_hash or field not in original:
            raise IdempotencyConflict("this Idempotency-Key was used with a different request body")
        return str(original[field]), original
    return new_id, None


def reserve(api: ApiContext, owner: str, key: str, body_hash: str) -> Reservation:
    """Reserve an Idempotency-Key for a new job id (before the upload, record or message is written), or
    find the reservation an earlier request with the key made; a different body is refused.

    A reservation whose record is missing belongs to a request still under way or one that died: the
    caller completes it with the reserved id (the same upload key, record and message), so a retry never
    makes a second job. Once confirmed (after the message was sent), a missing record means the job was
    deleted or expired.
    """
    job_id, original = _reservation(api, keyspace.IDEMPOTENCY.format(owner=owner, key=key), "job_id", body_hash)
    if original is None:
        return Reservation(job_id, None)
    job = api.jobs.get(job_id)
    if job is None and original.get("confirmed", True):
        raise NotFound("the job created with this Idempotency-Key no longer exists")
    return Reservation(job_id, job)


def confirm(api: ApiContext, owner: str, key: str, body_hash: str, job: Job) -> None:
    """Mark the reservation done: its job's record and message are written."""
    record = json.dumps({"job_id": job.id, "fingerprint": body_hash, "confirmed": True})
    api.redis.set(keyspace.IDEMPOTENCY.format(owner=owner, key=key), record, xx=True, keepttl=True)


def batch_fingerprint(requests: Sequence[JobRequest]) -> str:
    """What makes two batch requests "the same body" for Idempotency-Key: each photo's fingerprint, its
    bucket key and, for a photo refused on arrival, why and its bytes' digest, in order."""
    digest = hashlib.sha256(b"batch")
    for request in requests:
        refused = f"{request.refused.code}:{request.refused.message}" if request.refused is not None else ""
        for part in (fingerprint(request), request.source_key or "", refused):
            digest.update(hashlib.sha256(part.encode()).digest())
        if request.refused_digest:  # only then: the fingerprints of other batches stay what they were
            digest.update(request.refused_digest)
    return digest.hexdigest()


@dataclass(frozen=True)
class BatchReservation:
    """An Idempotency-Key's batch: the batch an earlier request made (a replay), or the id this request
    is to write its batch under, with its hold on the key (``writer``)."""

    batch_id: str
    batch: Batch | None
    writer: Lock | None


def reserve_batch(api: ApiContext, owner: str, key: str, body_hash: str) -> BatchReservation:
    """Reserve an Idempotency-Key for a new batch, or find the batch an earlier request with it made.

    A batch is written in many steps, so a request holds the key (``BATCH_WRITE_LEASE_SECONDS``, renewed
    before each chunk) while it writes; another request with the key meanwhile gets
    ``IdempotencyInProgress``. An unconfirmed reservation whose hold has run out belongs to a request
    that died: when its batch was written whole, it is the answer; when part-way, what it wrote is
    withdrawn and the batch is written afresh under a new id (a retry never makes a second batch).
    """
    name = keyspace.IDEMPOTENCY.format(owner=owner, key=key)
    writer = api.redis.lock(
        keyspace.IDEMPOTENCY_WRITER.format(owner=owner, key=key), timeout=BATCH_WRITE_LEASE_SECONDS, blocking=False
    )
    if not writer.acquire():
        raise IdempotencyInProgress("a request with this Idempotency-Key is still creating its batch; try again")
    try:
        batch_id, original = _reservation(api, name, "batch_id", body_hash)
        if original is None:
            return BatchReservation(batch_id, None, writer)
        batch = api.batches.get(batch_id)
        if original["confirmed"] and batch is None:
            raise NotFound("the batch created with this Idempotency-Key no longer exists")
        if batch is not None and (original["confirmed"] or _written_whole(api, batch)):
            confirm_batch(api, owner, key, body_hash, batch)
            _release(writer)
            return BatchReservation(batch_id, batch, None)
        if batch is not None:
            withdraw_batch(api, batch)
        batch_id = new_job_id()
        record = json.dumps({"batch_id": batch_id, "fingerprint": body_hash, "confirmed": False})
        api.redis.set(name, record, xx=True, keepttl=True)
        return BatchReservation(batch_id, None, writer)
    except Exception:
        _release(writer)
        raise


def _written_whole(api: ApiContext, batch: Batch) -> bool:
    """Whether a dead request wrote every job of its batch (its messages may be missing: the reconciler
    sends those). Such a batch is marked written here, if its request had not, so that the reconciler
    does not withdraw it; False when the reconciler has taken it to withdraw."""
    if api.batches.job_count(batch.id) < batch.total:
        return False
    if api.batches.is_written(batch.id):
        return True
    try:
        api.batches.written(batch.id)
    except WithdrawnBatch:
        return False
    return True


def confirm_batch(api: ApiContext, owner: str, key: str, body_hash: str, batch: Batch) -> None:
    """Mark the reservation done: every record of its batch is written."""
    record = json.dumps({"batch_id": batch.id, "fingerprint": body_hash, "confirmed": True})
    api.redis.set(keyspace.IDEMPOTENCY.format(owner=owner, key=key), record, xx=True, keepttl=True)


def submit_batch(api: ApiContext, owner: str, requests: list[JobRequest], key: str | None) -> tuple[Batch, bool]:
    """The batch of ``requests`` and whether it is an earlier request's (the same ``Idempotency-Key``
    and body), written by ``enqueue_batch`` otherwise."""
    if key is None:
        return enqueue_batch(api, owner, requests), False
    body_hash = batch_fingerprint(requests)
    reservation = reserve_batch(api, owner, key, body_hash)
    if reservation.batch is not None:
        return reservation.batch, True
    assert reservation.writer is not None
    try:
        batch = enqueue_batch(api, owner, requests, batch_id=reservation.batch_id, writer=reservation.writer)
        confirm_batch(api, owner, key, body_hash, batch)
    except Exception:
        _release(reservation.writer)  # a crash leaves the hold to run out instead
        raise
    _release(reservation.writer)
    return batch, False


def _release(writer: Lock) -> None:
    with suppress(redis.RedisError):  # LockNotOwnedError: it ran out, or another request took it over
        writer.release()


def requested_wait(api: ApiContext, prefer: str) -> int | None:
    """N of a ``Prefer: wait=N`` header, capped at the configured maximum (read without ``int`` of all
    its digits: thousands of them are still only the longest wait)."""
    match = _WAIT.search(prefer)
    if match is None:
        return None
    digits = match.group(1).lstrip("0") or "0"
    return min(int(digits) if len(digits) <= 6 else api.settings.max_wait_seconds, api.settings.max_wait_seconds)


WAIT_POLL_SECONDS = 0.1


def wait_for_terminal(api: ApiContext, job: Job, seconds: int) -> Job:
    """The job once it has finished, or as it is after ``seconds``; the caller holds a wait slot."""
    deadline = time.monotonic() + seconds
    for _ in range(math.ceil(seconds / WAIT_POLL_SECONDS) + 1):
        if job.status.is_terminal or time.monotonic() >= deadline:
            break
        time.sleep(WAIT_POLL_SECONDS)
        job = api.jobs.get(job.id) or job
    return job
