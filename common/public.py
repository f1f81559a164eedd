"""The public JSON of jobs, batches, results and errors: one set of models for the API's responses,
the webhook bodies and the OpenAPI document, so that none of them can drift from the others."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from common.batches import Batch, BatchCounts
from common.errors import error_codes
from common.id_report import IdPhotoSummary
from common.jobs import Job, JobStatus, now
from common.options import JobOptions
from common.settings import Settings
from common.storage import Storage

# Timestamps are sent as ISO 8601 text with the UTC offset (RFC 3339); links as absolute URLs.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
Url = Annotated[str, WithJsonSchema({"type": "string", "format": "uri"})]


class ErrorDetail(BaseModel):
    code: str = Field(
        description="stable, machine-readable", examples=["invalid_option"], json_schema_extra={"enum": error_codes()}
    )
    message: str


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"error": {"code": "not_found", "message": "no job '7532a2...'"}}]}
    )

    error: ErrorDetail


class InputModel(BaseModel):
    bytes: int | None = Field(description="null for a photo by URL (fetched by the worker)")
    format: str | None
    width: int | None
    height: int | None
    url: Url | None = Field(default=None, description="the photo's URL, for a photo by URL")


class ResultModel(BaseModel):
    url: Url = Field(description="download link, valid until expires_at")
    expires_at: Timestamp
    format: str
    media_type: str
    bytes: int
    width: int | None = Field(description="pixels; null for a report")
    height: int | None


EXAMPLE_OPTIONS = {
    "background": "blue",
    "id_spec": [],
    "custom_size": None,
    "custom_dpi": 300.0,
    "head_ratio": None,
    "crown_margin": None,
    "max_kb": None,
    "min_kb": None,
    "sheet": None,
    "cut_guides": True,
    "matte_source": "network",
    "format": None,
    "quality": 92,
    "outputs": ["composite"],
    "decontaminate": True,
    "webhook_url": None,
    "webhook_events": ["completed"],
}
EXAMPLE_JOB = {
    "id": "7532a2d0c4e94b1f9d2b8a61e3f0c7d5",
    "status": "succeeded",
    "created_at": "2026-12-02T09:30:00.120000+00:00",
    "started_at": "2026-12-02T09:30:00.180000+00:00",
    "finished_at": "2026-12-02T09:30:01.020000+00:00",
    "expires_at": "2026-12-03T09:30:00.120000+00:00",
    "attempts": 1,
    "batch_id": None,
    "input": {"bytes": 81234, "format": "JPEG", "width": 600, "height": 800, "url": None},
    "options": EXAMPLE_OPTIONS,
    "results": {
        "composite": {
            "url": "https://backdrop.example/v1/files/results/7532a2d0c4e94b1f9d2b8a61e3f0c7d5/composite.jpg"
            "?expires=1796290201&signature=3f9c...&filename=7532a2d0c4e94b1f9d2b8a61e3f0c7d5-composite.jpg",
            "expires_at": "2026-12-02T10:30:01.050000+00:00",
            "format": "jpeg",
            "media_type": "image/jpeg",
            "bytes": 64211,
            "width": 600,
            "height": 800,
        }
    },
    "id_photos": None,
    "error": None,
}


class JobModel(BaseModel):
    """A job: its state, its input and options, and when it succeeded the links to its results."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_JOB]})

    id: str
    status: Literal["queued", "processing", "succeeded", "failed", "canceled"]
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    expires_at: Timestamp = Field(description="the record, upload and results are deleted at this time")
    attempts: int
    batch_id: str | None
    input: InputModel
    options: JobOptions
    results: dict[str, ResultModel] | None = Field(
        description="when succeeded: composite, cutout, matte; "
        "ID photos: `id_photo.<spec>`, `report.<spec>`, `sheet.<spec>`"
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
    """A batch: counts of its jobs per state and one page of its jobs, in submission order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0c9e3b7f5a2d4e61b8f1a7c3d9e2b4f6",
                    "status": "completed",
                    "created_at": "2026-12-02T09:30:00.120000+00:00",
                    "expires_at": "2026-12-03T09:30:00.120000+00:00",
                    "total": 1,
                    "webhook_url": None,
                    "counts": {"queued": 0, "processing": 0, "succeeded": 1, "failed": 0, "canceled": 0},
                    "jobs": [{**EXAMPLE_JOB, "batch_id": "0c9e3b7f5a2d4e61b8f1a7c3d9e2b4f6"}],
                    "page": 1,
                    "next_page": None,
                }
            ]
        }
    )

    id: str
    status: Literal["pending", "completed"] = Field(description="completed when every job has finished")
    created_at: Timestamp
    expires_at: Timestamp
    total: int
    webhook_url: Url | None = None
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
