"""Request models of the HTTP API; their option fields are generated from ``JobOptions``, and the
response models are the public ones of ``common.public``, so the OpenAPI document matches both."""

from __future__ import annotations

from typing import Any, Literal

from flask_openapi3 import FileStorage
from pydantic import BaseModel, ConfigDict, Field, create_model

from common.options import JobOptions, Surface
from common.public import BatchModel, ErrorBody, ErrorDetail, JobModel

__all__ = [
    "ERRORS",
    "BatchForm",
    "BatchJson",
    "BatchModel",
    "ErrorBody",
    "ErrorDetail",
    "JobForm",
    "JobHeaders",
    "JobModel",
    "JobPath",
    "operation_id",
]


def operation_id(*, name: str, path: str, method: str) -> str:
    """The OpenAPI operationId of a view: its function's name in lower camel case (``createJob``), so
    that generated clients get readable method names."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _option_fields(surface: Surface) -> dict[str, Any]:
    """The fields of ``JobOptions`` accepted on ``surface``, as they are declared there."""
    names = JobOptions.names(surface)
    return {name: (field.annotation, field) for name, field in JobOptions.model_fields.items() if name in names}


def _form_model(name: str, doc: str, surface: Surface, **inputs: Any) -> type[BaseModel]:
    model = create_model(name, __config__=ConfigDict(extra="forbid"), **inputs, **_option_fields(surface))
    model.__doc__ = doc
    return model


JobForm = _form_model(
    "JobForm",
    "``POST /v1/jobs``: multipart/form-data. Send ``image`` or ``image_url``, and any options.",
    Surface.JOB,
    image=(FileStorage | None, Field(default=None, description="the photo (JPEG, PNG, WebP, BMP, TIFF, GIF)")),
    image_url=(str | None, Field(default=None, description="an http(s) URL the worker fetches instead of an upload")),
    background_image=(FileStorage | None, Field(default=None, description="the background for background=image")),
)

BatchForm = _form_model(
    "BatchForm",
    "multipart/form-data: repeated ``images`` files plus the shared options of ``POST /v1/jobs``.",
    Surface.BATCH,
    images=(list[FileStorage], Field(default_factory=list, description="the photos")),
)

BatchOptions = create_model("BatchOptions", __config__=ConfigDict(extra="forbid"), **_option_fields(Surface.BATCH))


class BatchJson(BaseModel):
    """application/json: photos by URL, or objects already in the bucket, with shared options."""

    model_config = ConfigDict(extra="forbid")

    image_urls: list[str] = Field(default_factory=list)
    keys: list[str] = Field(default_factory=list, description="object keys in the storage bucket")
    options: BatchOptions = Field(  # type: ignore[valid-type]
        default_factory=BatchOptions, description="the option fields of POST /v1/jobs"
    )


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
