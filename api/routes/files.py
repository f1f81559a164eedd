"""Signed, expiring downloads of objects in a store the API serves itself (S3 clients get presigned URLs instead)."""

from __future__ import annotations

from flask import Response, request, send_file
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from api.context import ctx
from api.schemas import DOWNLOAD, binary_response, errors, exact_fields, operation_id
from common.errors import BackdropError, LinkRefused, NotFound
from common.imaging import OUTPUT_MEDIA_TYPES
from common.pipeline import REPORT_MEDIA_TYPE
from common.storage import attachment_disposition

files = APIBlueprint(
    "files", __name__, url_prefix="/v1", abp_tags=[Tag(name="files")], operation_id_callback=operation_id
)


class FilePath(BaseModel):
    key: str = Field(description="the object key, from a result URL")


class FileQuery(BaseModel):
    """The signed parameters of a result URL: send them as the job gave them."""

    model_config = ConfigDict(json_schema_extra=exact_fields())

    expires: int = Field(description="when the link expires (unix time)")
    signature: str = Field(description="the link's signature")
    filename: str | None = Field(default=None, description="the name to save the file as")


# Results have their own types; any other stored object is sent as application/octet-stream.
PARTIAL = {
    **DOWNLOAD,
    "Content-Range": {"description": "the bytes sent, of the whole", "required": True, "schema": {"type": "string"}},
}
FILE_MEDIA_TYPES = ["application/octet-stream", *OUTPUT_MEDIA_TYPES.values(), REPORT_MEDIA_TYPE]


@files.get(
    "/files/<path:key>",
    responses={
        200: binary_response("the file", FILE_MEDIA_TYPES, headers=DOWNLOAD),
        206: binary_response("the part of the file asked for with Range", FILE_MEDIA_TYPES, headers=PARTIAL),
        304: {"description": "not modified since the copy the client holds (If-None-Match, If-Modified-Since)"},
        **errors(403, 404, 416, 422, 429),
    },
)
def download(path: FilePath, query: FileQuery) -> Response:
    """A result in local storage, through the signed, expiring link given by the job."""
    key = path.key
    server = ctx().storage.file_server()
    if server is None:
        raise NotFound("this server does not serve files; use the presigned URLs of the job")
    filename = request.args.get("filename")
    try:
        expires = int(request.args.get("expires", ""))
    except ValueError:
        raise LinkRefused("the link is malformed (expires)") from None
    if not server.verify_url_signature(key, expires, request.args.get("signature", ""), filename):
        raise LinkRefused("the link is invalid or has expired")
    try:
        path = server.open_path(key)
    except (ValueError, BackdropError):
        raise NotFound("no such file (deleted or expired)") from None
    response = send_file(path, mimetype=server.content_type(key), max_age=0, conditional=True)
    if filename:
        response.headers["Content-Disposition"] = attachment_disposition(filename)
    return response
