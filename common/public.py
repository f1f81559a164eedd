"""The public JSON of jobs, batches, results and errors: one set of models for the API's responses,
the webhook bodies and the OpenAPI document, so that none of them can drift from the others."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, Field

from common.batches import Batch, BatchCounts
from common.errors import error_codes
from common.id_report import IdPhotoSummary
from common.jobs import Job, JobStatus, now
from common.options import JobOptions
from common.settings import Settings
from common.storage import Storage


class ErrorDetail(BaseModel):
    code: str = Field(
        description="stable, machine-readable", examples=["invalid_option"], json_schema_extra={"enum": error_codes()}
    )
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class InputModel(BaseModel):
    bytes: int | None = Field(description="null for a photo by URL (fetched by the worker)")
    format: str | None
    width: int | None
    height: int | None
    url: str | None = None


class ResultModel(BaseModel):
    url: str = Field(description="download link, valid until expires_at")
    expires_at: str
    format: str
    media_type: str
    bytes: int
    width: int | None = Field(description="pixels; null for a report")
    height: int | None


class JobModel(BaseModel):
    id: str
    status: Literal["queued", "processing", "succeeded", "failed", "canceled"]
    created_at: str
    started_at: str | None
    finished_at: str | None
    expires_at: str = Field(description="the record, upload and results are deleted at this time")
    attempts: int
    batch_id: str | None
    input: InputModel
    options: JobOptions
    results: dict[str, ResultModel] | None = Field(
        description="when succeeded: composite, cutout, matte; ID photos: id_photo.<spec>, report.<spec>, sheet.<spec>"
    )
    id_photos: list[IdPhotoSummary] | None = Field(
        default=None, description="ID-photo jobs, when succeeded: each spec's outcome (the full report is a result)"
    )
    error: ErrorDetail | None = Field(description="why, when failed")

    @classmethod
    def of(cls, job: Job, storage: Storage, settings: Settings) -> JobModel:
        """What a client sees of ``job``; result links expire with the URL expiry, never after the job."""
        results = None
        if job.status is JobStatus.SUCCEEDED:
            expiry = min(settings.url_expiry_seconds, max(1, int((job.expires_at - now()).total_seconds())))
            expires_at = (now() + timedelta(seconds=expiry)).isoformat()
            results = {
                name: ResultModel(
                    url=storage.url(result.key, expires_in=expiry, filename=f"{job.id}-{result.key.rsplit('/', 1)[1]}"),
                    expires_at=expires_at,
                    format=result.format,
                    media_type=result.media_type,
                    bytes=result.bytes,
                    width=result.width,
                    height=result.height,
                )
                for name, result in job.results.items()
            }
        return cls(
            id=job.id,
            status=job.status.value,
            created_at=job.created_at.isoformat(),
            started_at=job.started_at.isoformat() if job.started_at else None,
            finished_at=job.finished_at.isoformat() if job.finished_at else None,
            expires_at=job.expires_at.isoformat(),
            attempts=job.attempts,
            batch_id=job.batch_id,
            input=InputModel(**job.input.model_dump(), url=job.image_url),
            options=job.options,
            results=results,
            id_photos=job.id_photos if job.status is JobStatus.SUCCEEDED else None,
            error=ErrorDetail(**job.error.model_dump()) if job.error else None,
        )


class BatchModel(BaseModel):
    id: str
    status: Literal["pending", "completed"] = Field(description="completed when every job has finished")
    created_at: str
    expires_at: str
    total: int
    webhook_url: str | None = None
    counts: BatchCounts
    jobs: list[JobModel]
    page: int
    next_page: int | None

    @classmethod
    def of(
        cls,
        batch: Batch,
        counts: BatchCounts,
        jobs: Sequence[Job],
        storage: Storage,
        settings: Settings,
        *,
        page: int,
        page_size: int,
    ) -> BatchModel:
        """What a client sees of a batch: counts per status and one page of its jobs."""
        start = (page - 1) * page_size
        return cls(
            id=batch.id,
            status="completed" if counts.finished >= batch.total else "pending",
            created_at=batch.created_at.isoformat(),
            expires_at=batch.expires_at.isoformat(),
            total=batch.total,
            webhook_url=batch.webhook_url,
            counts=counts,
            jobs=[JobModel.of(job, storage, settings) for job in jobs],
            page=page,
            next_page=page + 1 if start + page_size < batch.total else None,
        )
