"""Request models of the HTTP API and what each response sends; option fields are generated from
``JobOptions`` and the response bodies are the public models of ``common.public``, so that the OpenAPI
document matches both.

Form models declare what a multipart client sends, exactly: files are binary parts, optional fields
are simply not required (a form has no null), unknown fields are refused (``additionalProperties:
false``). flask-openapi3 reads a form model's JSON schema to decide which parts are files, so the schema
below is also what the server parses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from flask_openapi3 import FileStorage
from flask_openapi3.models.schema import Schema as DocumentSchema
from pydantic import BaseModel, ConfigDict, Field, create_model

from api.errors import RETRY_LATER_STATUSES
from common.errors import (
    HTTP_ERROR_CODES,
    OTHER_HTTP_ERROR_CODE,
    IdempotencyInProgress,
    InvalidInput,
    InvalidOption,
    LinkRefused,
    NotFound,
    QueueUnavailable,
    RecordDamaged,
    Unauthorized,
    UnsupportedImage,
)
from common.options import JobOptions, Surface
from common.public import BatchModel, ErrorBody, ErrorDetail, JobModel
from common.workers import WorkerState

__all__ = [
    "BatchForm",
    "BatchJson",
    "BatchModel",
    "ErrorBody",
    "ErrorDetail",
    "JobForm",
    "JobHeaders",
    "JobModel",
    "JobPath",
    "binary_response",
    "errors",
    "json_response",
    "no_content",
    "operation_id",
]

# flask-openapi3 copies each model's JSON schema into its own Schema model, which knows only part of JSON
# Schema and drops the rest (if/then/else, examples, contentMediaType...). OpenAPI 3.1 schemas are JSON
# Schema 2020-12: keep every keyword, so that the document says what the models say. This runs before any
# route is declared, since every route module imports this one.
DocumentSchema.model_config["extra"] = "allow"
DocumentSchema.model_rebuild(force=True)

IMAGE_PARTS = "image/*"  # the media type a client gives a photo's part (the server reads the bytes)


def operation_id(*, name: str, path: str, method: str) -> str:
    """The OpenAPI operationId of a view: its function's name in lower camel case (``createJob``), so
    that generated clients get readable method names."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


# --- request models ------------------------------------------------------------------------------


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """``X | None`` as ``X``: a form field or JSON option that is left out instead of sent as null."""
    branches = prop.get("anyOf")
    if branches and {"type": "null"} in branches:
        rest = [branch for branch in branches if branch != {"type": "null"}]
        prop = {key: value for key, value in prop.items() if key != "anyOf"}
        prop = {**rest[0], **prop} if len(rest) == 1 else {**prop, "anyOf": rest}
    if "default" in prop and prop["default"] is None:
        prop = {key: value for key, value in prop.items() if key != "default"}
    return prop


def exact_fields(*, required: Iterable[str] = (), rules: Mapping[str, Any] | None = None) -> Any:
    """A model's ``json_schema_extra``: no nullable fields, the ``required`` ones, and further ``rules``
    (JSON Schema keywords) that the fields must follow together."""

    def finish(schema: dict[str, Any]) -> None:
        schema["properties"] = {name: _without_null(prop) for name, prop in schema["properties"].items()}
        needed = [*schema.get("required", []), *required]
        if needed:
            schema["required"] = list(dict.fromkeys(needed))
        schema.update(rules or {})

    return finish


def exactly_one(first: str, second: str) -> dict[str, Any]:
    """JSON Schema for "send exactly one of ``first`` and ``second``". Written with if/then/else, not
    oneOf: generators read a oneOf as two request models, and a multipart union is sent as nothing."""
    return {"if": {"required": [first]}, "then": {"not": {"required": [second]}}, "else": {"required": [second]}}


def _option_fields(surface: Surface) -> dict[str, Any]:
    """The fields of ``JobOptions`` accepted on ``surface``, as they are declared there."""
    names = JobOptions.names(surface)
    return {name: (field.annotation, field) for name, field in JobOptions.model_fields.items() if name in names}


def _form_config(
    *, files: Iterable[str], required: Iterable[str] = (), rules: Mapping[str, Any] | None = None, **extra: Any
) -> ConfigDict:
    """The configuration of a multipart form model: unknown fields refused, numbers read as text where a
    text field is declared (flask-openapi3 parses each part as JSON first), file parts sent as images."""
    encoding = {name: {"contentType": IMAGE_PARTS} for name in files}
    return ConfigDict(
        extra="forbid",
        coerce_numbers_to_str=True,
        json_schema_extra=exact_fields(required=required, rules=rules),
        openapi_extra={"encoding": encoding, **extra},  # type: ignore[typeddict-unknown-key]
    )


def _form_model(name: str, doc: str, surface: Surface, config: ConfigDict, **inputs: Any) -> type[BaseModel]:
    return create_model(name, __config__=config, __doc__=doc, **inputs, **_option_fields(surface))


PHOTO_HELP = "the photo (JPEG, PNG, WebP, BMP, TIFF, GIF); send this or image_url"

JobForm = _form_model(
    "JobForm",
    "POST /v1/jobs, multipart/form-data: exactly one of image (a file) or image_url, and any options.",
    Surface.JOB,
    _form_config(
        files=("image", "background_image"),
        rules=exactly_one("image", "image_url"),
        description="the photo, as a file or a URL, and the job's options",
    ),
    image=(FileStorage | None, Field(default=None, description=PHOTO_HELP)),
    image_url=(
        str | None,
        Field(
            default=None,
            description="an http(s) URL the worker fetches instead of an upload; send this or image",
            json_schema_extra={"format": "uri"},
            examples=["https://images.example/portrait.jpg"],
        ),
    ),
    background_image=(
        FileStorage | None,
        Field(default=None, description="the background of background=image (scaled to cover the photo)"),
    ),
)

BatchForm = _form_model(
    "BatchForm",
    "POST /v1/batches, multipart/form-data: repeated images files plus the shared options of POST /v1/jobs.",
    Surface.BATCH,
    _form_config(files=("images",), required=("images",), description="the photos and their shared options"),
    # Not required in the model: a JSON batch is validated by BatchJson and leaves the form empty.
    images=(
        list[FileStorage],
        Field(default_factory=list, description="the photos, one part each", json_schema_extra={"minItems": 1}),
    ),
)

BatchOptions = create_model(
    "BatchOptions",
    __config__=ConfigDict(extra="forbid", json_schema_extra=exact_fields()),
    __doc__="The options of a JSON batch: the option fields of POST /v1/jobs that a batch accepts.",
    **_option_fields(Surface.BATCH),
)

BATCH_JSON_EXAMPLE = {
    "image_urls": ["https://images.example/a.jpg", "https://images.example/b.jpg"],
    "options": {"background": "white", "format": "png"},
}


class BatchJson(BaseModel):
    """POST /v1/batches, application/json: photos by URL and objects already in the storage bucket (at
    least one in all), with shared options."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            # At least one photo: without image_urls, keys are required (if/then, as in exactly_one).
            "if": {"properties": {"image_urls": {"maxItems": 0}}},
            "then": {"required": ["keys"], "properties": {"keys": {"minItems": 1}}},
            "examples": [BATCH_JSON_EXAMPLE],
        },
    )

    image_urls: list[str] = Field(
        default_factory=list,
        description="http(s) URLs the workers fetch",
        json_schema_extra={"items": {"type": "string", "format": "uri"}},
    )
    keys: list[str] = Field(
        default_factory=list, description="keys of this API key's own uploads (POST /v1/uploads), under its prefix"
    )
    options: BatchOptions = Field(  # type: ignore[valid-type]
        default_factory=BatchOptions, description="the option fields of POST /v1/jobs that a batch accepts"
    )


# Request bodies that may also come as JSON, beside the operation's form: operationId -> the JSON model.
JSON_BODIES: dict[str, type[BaseModel]] = {"createBatch": BatchJson}


MAX_IDEMPOTENCY_KEY_LENGTH = 200  # longer keys are refused: cut, two keys alike this far would be one


def idempotency_key(value: str | None) -> str | None:
    """An ``Idempotency-Key`` header as the API keys it: stripped; None if empty; ``InvalidInput`` past
    its maximum length."""
    key = (value or "").strip()
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidInput(f"an Idempotency-Key is at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters, not {len(key)}")
    return key or None


def _idempotency_key_field(made: str) -> Any:
    return Field(
        default=None,
        alias="Idempotency-Key",
        description=f"the same key and body within 24 h returns the {made} the first request made; another body "
        f"gives 422; at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters (a longer key is a 400)",
        json_schema_extra={"example": f"order-1234-{made}-1", "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
    )


class JobHeaders(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra=exact_fields())

    idempotency_key: str | None = _idempotency_key_field("job")
    prefer: str | None = Field(
        default=None,
        alias="Prefer",
        description="wait=N (N <= 60): hold the response until the job finishes or N s pass",
        json_schema_extra={"example": "wait=10"},
    )


class BatchHeaders(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra=exact_fields())

    idempotency_key: str | None = _idempotency_key_field("batch")


class JobPath(BaseModel):
    job_id: str = Field(description="the job's id")


class HealthModel(BaseModel):
    status: Literal["ok"]


class ReadyModel(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, Literal["ok", "unreachable", "full"]] = Field(
        description="each dependency: redis, storage", examples=[{"redis": "ok", "storage": "ok"}]
    )
    workers: list[WorkerState] = Field(
        description=(
            "the workers alive now, each with its engine, precision and self-check figures; informative "
            "only: jobs are accepted, and queued, without any (empty when Redis is unreachable)"
        )
    )


# --- responses -----------------------------------------------------------------------------------


def _header(description: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


REQUEST_ID = {
    "X-Request-Id": _header("the request's id, as in the logs (the client's own when it sent one)", {"type": "string"})
}
RATE_LIMIT = {
    "RateLimit-Limit": _header(
        "requests allowed in the window of the budget this request counts in", {"type": "integer"}
    ),
    "RateLimit-Remaining": _header("requests left in that window", {"type": "integer", "minimum": 0}),
    "RateLimit-Reset": _header("seconds until the window resets", {"type": "integer", "minimum": 0}),
}
RETRY_AFTER = _header("seconds to wait before asking again", {"type": "integer", "minimum": 0})
LOCATION = {"Location": _header("the path of the new resource, to poll", {"type": "string"}, required=True)}
POLL_AGAIN = {"Retry-After": _header("while the job is pending: seconds until the next poll", RETRY_AFTER["schema"])}
PREFERENCE_APPLIED = {
    "Preference-Applied": _header(
        "wait=N when the request was held for Prefer: wait=N (absent: poll)",
        {"type": "string", "pattern": r"^wait=\d+$"},
    )
}
IDEMPOTENT_REPLAYED = {
    "Idempotent-Replayed": _header(
        "true: the job or batch an earlier request with this Idempotency-Key made", {"const": "true"}
    )
}
DOWNLOAD = {
    "Content-Disposition": _header("attachment, with the file's name", {"type": "string"}),
}


def _headers(metered: bool, extra: Mapping[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    return {**REQUEST_ID, **(RATE_LIMIT if metered else {}), **(extra or {})}


def _described(model: type[BaseModel], response: dict[str, Any]) -> type[BaseModel]:
    """``model`` itself in the document (the same component), with one response's description, headers and
    example: flask-openapi3 reads them from a response model's ``openapi_extra``."""
    return type(
        model.__name__,
        (model,),
        {"__doc__": model.__doc__, "__module__": model.__module__, "model_config": ConfigDict(openapi_extra=response)},  # type: ignore[typeddict-unknown-key]
    )


def json_response(
    model: type[BaseModel],
    description: str,
    *,
    metered: bool = True,
    headers: Mapping[str, dict[str, Any]] | None = None,
    example: Any = None,
) -> type[BaseModel]:
    """A JSON response of ``model``; ``metered``: it counts against a rate limit (``RateLimit-*``)."""
    response: dict[str, Any] = {"description": description, "headers": _headers(metered, headers)}
    if example is not None:
        response["example"] = example
    return _described(model, response)


def binary_response(
    description: str, media_types: Iterable[str], *, metered: bool = True, headers: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A response whose body is a file of one of ``media_types``."""
    content = {media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in media_types}
    return {"description": description, "content": content, "headers": _headers(metered, headers)}


def no_content(description: str, *, metered: bool = True) -> dict[str, Any]:
    return {"description": description, "headers": _headers(metered)}


# What each status of an error means, and the code an example of it carries: a code of the exception
# hierarchy, or of the HTTP layer's own refusals (``HTTP_ERROR_CODES``), never spelled out here.
ERROR_MEANINGS: dict[int, tuple[str, str, str]] = {
    400: (
        HTTP_ERROR_CODES[400],
        "the request is malformed or incomplete",
        "send exactly one of: an 'image' file, or an 'image_url' field",
    ),
    401: (
        Unauthorized.code,
        "no API key, or an unknown or revoked one",
        "send an API key: 'Authorization: Bearer <key>'",
    ),
    403: (LinkRefused.code, "the signed link is invalid or has expired", "the link is invalid or has expired"),
    404: (NotFound.code, "no such resource for this API key", "no job '7532a2...' (unknown, deleted, or expired)"),
    408: (
        HTTP_ERROR_CODES[408],
        "the body paused for longer than the server waits, or arrived too slowly",
        "the request body stalled",
    ),
    410: (RecordDamaged.code, "the record is damaged: only DELETE gets past it", "the job's record is damaged"),
    413: (
        HTTP_ERROR_CODES[413],
        "the body is larger than the upload limit",
        "the request body is larger than the upload limit",
    ),
    414: (HTTP_ERROR_CODES[414], "the request target is too long", "the request target is longer than 4096 characters"),
    415: (UnsupportedImage.code, "the upload is not an image the service reads", "the upload is not a supported image"),
    416: (
        OTHER_HTTP_ERROR_CODE,
        "the Range asked for is not in the file",
        "The server cannot provide the requested range.",
    ),
    409: (
        IdempotencyInProgress.code,
        "another request with this Idempotency-Key is still creating its batch",
        "a request with this Idempotency-Key is still creating its batch; try again",
    ),
    422: (InvalidOption.code, "a field or option has an invalid value", "background: unknown colour 'purple'"),
    429: (HTTP_ERROR_CODES[429], "over a rate limit or the key's quota of pending jobs", "rate limit exceeded"),
    503: (
        QueueUnavailable.code,
        "the job queue or the storage is unavailable",
        "the job queue is unavailable, try again later",
    ),
}


def _error_headers(status: int) -> dict[str, dict[str, Any]]:
    return {"Retry-After": {**RETRY_AFTER, "required": True}} if status in RETRY_LATER_STATUSES else {}


def errors(*statuses: int, metered: bool = True) -> dict[int, type[BaseModel]]:
    """The error responses of an operation: ``{"error": {"code", "message"}}`` bodies, with ``Retry-After``
    on 409, 429 and 503. Every operation may also answer 414 (a request target over the limit)."""
    found = {}
    for status in sorted({*statuses, 414}):
        code, meaning, message = ERROR_MEANINGS[status]
        example = {"error": {"code": code, "message": message}}
        found[status] = json_response(
            ErrorBody, meaning, metered=metered, headers=_error_headers(status), example=example
        )
    return found


# The errors every authenticated operation may answer: no key, over a limit, Redis or storage down.
AUTHENTICATED = (401, 429, 503)
