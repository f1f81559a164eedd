"""A batch's succeeded composites as one zip, streamed while it is written.

The zip is written into a sink that hands each finished member to the response at once, so the first
bytes leave while later results are still being read from storage, and neither the API's memory nor its
disk holds the whole archive (a 10,000-photo batch is gigabytes). The results are read a few at a time
ahead of the writer, in submission order. Members are stored, not compressed: the composites are JPEG,
PNG or WebP already. Past 4 GiB or 65,535 members the zip is ZIP64, as ``zipfile`` writes it.
"""

from __future__ import annotations

import logging
import zipfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait

from api.context import ApiContext
from common.batches import Batch
from common.errors import ObjectNotFound, StorageError
from common.jobs import Job, JobStatus
from common.options import file_extension

log = logging.getLogger(__name__)

READS_AHEAD = 8  # results read from storage ahead of the one being written (the memory held: this many)
RECORDS_PER_PAGE = 500  # job records read at a time
FIRST_PAGE = 2 * READS_AHEAD  # the records read before the first member: enough to fill the reads ahead


class _Sink:
    """A write-only, unseekable file for ``zipfile``: it keeps what was written until ``take()``."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def member_name(index: int, job: Job) -> str:
    """``{index:05d}-{job_id}.{ext}``: the job's place in the batch, its id and its composite's format."""
    return f"{index:05d}-{job.id}.{file_extension(job.results['composite'].format)}"


def _succeeded(api: ApiContext, batch: Batch) -> Iterator[tuple[int, Job]]:
    """The batch's jobs with a composite, with their places in the batch, a page of records at a time
    (a short one first, so that the zip's first byte does not wait for a full page)."""
    start, size = 0, FIRST_PAGE
    while start < batch.total:
        for offset, job in enumerate(api.batches.jobs_of(batch.id, start, start + size - 1)):
            if job is not None and job.status is JobStatus.SUCCEEDED and "composite" in job.results:
                yield start + offset, job
        start, size = start + size, RECORDS_PER_PAGE


def _read_ahead(api: ApiContext, batch: Batch) -> Iterator[tuple[str, bytes | None]]:
    """Each member's name and bytes, in order, with up to ``READS_AHEAD`` reads in flight; None for a
    result that is no longer in storage (deleted since its job succeeded)."""
    with ThreadPoolExecutor(READS_AHEAD, thread_name_prefix="zip-read") as pool:
        window: deque[tuple[str, Future[bytes]]] = deque()

        def oldest() -> tuple[str, bytes | None]:
            name, future = window.popleft()
            try:
                return name, future.result()
            except ObjectNotFound:
                return name, None

        for count, (index, job) in enumerate(_succeeded(api, batch)):
            window.append((member_name(index, job), pool.submit(api.storage.get, job.results["composite"].key)))
            if count == 0:
                # The first read alone: just after a storage outage it is the breaker's one trial call,
                # and the reads ahead would be refused beside it (a 503 for a zip the storage could serve).
                wait([window[0][1]])
            if len(window) > READS_AHEAD:
                yield oldest()
        while window:
            yield oldest()


def stream_batch_zip(api: ApiContext, batch: Batch) -> Iterator[bytes]:
    """The zip's bytes, a member at a time; the central directory last."""
    sink = _Sink()
    written = 0
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
        try:
            for name, data in _read_ahead(api, batch):
                if data is None:
                    log.warning("batch %s: the result of %s is gone from storage; left out of the zip", batch.id, name)
                    continue
                archive.writestr(name, data)
                written += 1
                yield sink.take()
        except StorageError as exc:
            # Raised on. Before the first member it is the request's error answer; after it the server
            # cuts the connection, so that no client can take the zip for a whole one.
            if written:
                log.error("batch %s: the zip is cut after %d members: %s", batch.id, written, exc)
            raise
    yield sink.take()
