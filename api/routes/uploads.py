"""Uploads straight into storage, under the caller's own prefix: ``POST /v1/uploads`` hands out signed
``PUT`` URLs (presigned by S3, or signed links the API itself receives on local storage), and a JSON
batch then names the uploaded objects by their ``keys``. Large batches never pass through the API."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Literal

from flask import Response, jsonify, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from api.auth import current_owner
from api.context import ctx
from api.schemas import AUTHENTICATED, errors, exact_fields, json_response, no_content, operation_id
from common.errors import InvalidInput, LinkRefused, NotFound
from common.jobs import now
from common.public import Timestamp, Url
from common.storage import upload_key, upload_prefix

uploads = APIBlueprint(
    "uploads",
    __name__,
    url_prefix="/v1",
    abp_tags=[Tag(name="uploads")],
    operation_id_callback=operation_id,
)

MAX_FILES_PER_REQUEST = 1000
# What an upload may be sent as: an image type, or plain bytes (the photo is identified by its content).
UPLOAD_CONTENT_TYPE = r"^(image/[A-Za-z0-9.+-]+|application/octet-stream)$"


class UploadFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content_type: str = Field(
        default="application/octet-stream",
        pattern=UPLOAD_CONTENT_TYPE,
        description="the Content-Type the PUT must send (signed: another one is refused)",
    )
    bytes: int = Field(ge=1, description="the file's size; the PUT must send exactly this Content-Length")


class UploadsJson(BaseModel):
    """application/json: the files to upload, each with its size and content type."""

    model_config = ConfigDict(extra="forbid")

    files: list[UploadFile] = Field(min_length=1, max_length=MAX_FILES_PER_REQUEST)


class UploadTarget(BaseModel):
    key: str = Field(description="the object's key, for a JSON batch's keys")
    url: Url = Field(description="where to PUT the file before expires_at")
    method: Literal["PUT"] = Field(default="PUT")
    headers: dict[str, str] = Field(description="the headers the PUT must send, as signed")
    expires_at: Timestamp


class UploadsModel(BaseModel):
    prefix: str = Field(description="this API key's own prefix: the only keys its batches may name")
    uploads: list[UploadTarget]


@uploads.post(
    "/uploads",
    responses={
        201: json_response(UploadsModel, "the upload URLs, one per file, in the order asked"),
        **errors(400, 408, 413, 422, *AUTHENTICATED),
    },
    security=[{"bearer": []}, {"apiKey": []}],
)
def create_uploads(body: UploadsJson) -> tuple[Response, int]:
    """Signed `PUT` URLs for new objects under the caller's own prefix.
    Name the objects in a JSON batch's `keys` once uploaded."""
    api = ctx()
    owner = current_owner()
    limit = api.settings.max_upload_bytes
    if any(file.bytes > limit for file in body.files):
        raise InvalidInput(f"each upload is limited to {limit} bytes")
    expires_in = api.settings.url_expiry_seconds
    expires_at = (now() + timedelta(seconds=expires_in)).isoformat()
    targets = []
    for file in body.files:
        key = upload_key(owner, uuid.uuid4().hex)
        url = api.storage.upload_url(
            key, expires_in=expires_in, content_type=file.content_type, content_length=file.bytes
        )
        headers = {"Content-Type": file.content_type, "Content-Length": str(file.bytes)}
        targets.append(UploadTarget(key=key, url=url, headers=headers, expires_at=expires_at))
    model = UploadsModel(prefix=upload_prefix(owner), uploads=targets)
    return jsonify(model.model_dump(mode="json")), 201


class UploadPath(BaseModel):
    key: str = Field(description="the object key, from an upload URL")


class UploadQuery(BaseModel):
    """The signed parameters of an upload URL (a link without them is refused with 403)."""

    model_config = ConfigDict(json_schema_extra=exact_fields(required=("expires", "content_length", "signature")))

    expires: int | None = Field(default=None, description="when the link expires (unix time)")
    content_length: int | None = Field(default=None, description="the Content-Length the PUT must send")
    signature: str | None = Field(default=None, description="the link's signature")


# Declared as application/octet-stream, the type generators send bytes as; a link made for an image/*
# type takes that type instead (its Content-Type is signed).
UPLOAD_BODY = {
    "description": "the file's bytes, with the Content-Type and Content-Length the link was made for",
    "required": True,
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


@uploads.put(
    "/files/<path:key>",
    responses={201: no_content("stored", metered=False), **errors(400, 403, 404, 408, 413, 422, metered=False)},
    openapi_extensions={"requestBody": UPLOAD_BODY},
)
def receive_upload(path: UploadPath, query: UploadQuery) -> tuple[str, int]:
    """Local storage: the target of an upload URL. The body is streamed into storage, never held whole."""
    api = ctx()
    server = api.storage.file_server()
    if server is None:
        raise NotFound("this server takes no uploads itself; PUT to the presigned URLs of POST /v1/uploads")
    content_type = request.headers.get("Content-Type", "")
    if query.expires is None or query.content_length is None or not query.signature:
        raise LinkRefused("the link is malformed")
    if not server.verify_upload_signature(path.key, query.expires, content_type, query.content_length, query.signature):
        raise LinkRefused("the link is invalid or has expired, or the Content-Type is not the one it was made for")
    if request.content_length != query.content_length:
        raise InvalidInput(f"send exactly the Content-Length the link was made for ({query.content_length})")
    api.storage.put_file(path.key, request.stream, content_type)
    return "", 201
