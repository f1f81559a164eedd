"""Request and response models of the HTTP API; the OpenAPI document is generated from them."""

from __future__ import annotations

from typing import Literal

from flask_openapi3 import FileStorage
from pydantic import BaseModel, ConfigDict, Field


class JobForm(BaseModel):
    """``POST /v1/jobs``: multipart/form-data. Send ``image`` or ``image_url``."""

    model_config = ConfigDict(extra="allow")

    image: FileStorage | None = Field(default=None, description="the photo (JPEG, PNG, WebP, BMP, TIFF, GIF)")
    image_url: str | None = Field(default=None, description="an http(s) URL the worker fetches instead of an upload")
    background: str | None = Field(
        default=None,
        description="red, blue, green, white, #RRGGBB, #RGB, transparent, blur, or image (with background_image)",
        examples=["blue"],
    )
    background_image: FileStorage | None = Field(default=None, description="the background for background=image")
    format: Literal["jpeg", "jpg", "png", "webp"] | None = Field(
        default=None, description="default: jpeg (png if transparent)"
    )
    quality: int | None = Field(default=None, ge=1, le=100, description="JPEG/WebP quality, default 92")
    outputs: str | None = Field(
        default=None, description="comma-separated: composite, cutout, matte", examples=["composite"]
    )
    decontaminate: bool | None = Field(default=None, description="remove the old background's colour from edges")
    webhook_url: str | None = Field(default=None, description="where to POST signed job events (Standard Webhooks)")
    webhook_events: str | None = Field(default=None, description="comma-separated: completed, started")


class JobHeaders(BaseModel):
    model_config = ConfigDict(extra="allow")

    idempotency_key: str | None = Field(
        default=None,
        alias="Idempotency-Key",
        description="the same key and body within 24 h returns the original job; another body gives 422",
    )
    prefer: str | None = Field(
        default=None,
        alias="Prefer",
        description="wait=N (N <= 60): hold the response until the job finishes or N s pass",
    )


class JobPath(BaseModel):
    job_id: str = Field(description="the job's id")


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable", examples=["invalid_option"])
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class InputModel(BaseModel):
    bytes: int
    format: str
    width: int
    height: int
    url: str | None = None


class OptionsModel(BaseModel):
    background: str
    format: str | None
    quality: int
    outputs: list[str]
    decontaminate: bool
    webhook_url: str | None
    webhook_events: list[str]


class ResultModel(BaseModel):
    url: str = Field(description="download link, valid until expires_at")
    expires_at: str
    format: str
    media_type: str
    bytes: int
    width: int
    height: int


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
    options: OptionsModel
    results: dict[str, ResultModel] | None = Field(description="composite / cutout / matte, when succeeded")
    error: ErrorDetail | None = Field(description="why, when failed")


class HealthModel(BaseModel):
    status: str


class ReadyModel(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]


ERRORS = {
    400: ErrorBody,
    401: ErrorBody,
    404: ErrorBody,
    413: ErrorBody,
    415: ErrorBody,
    422: ErrorBody,
    429: ErrorBody,
    503: ErrorBody,
}
