"""Signed, expiring downloads of LocalStorage objects (S3 clients get presigned URLs instead)."""

from __future__ import annotations

from flask import Blueprint, Response, request, send_file

from api.context import ctx
from api.errors import NotFound
from common.errors import BackdropError
from common.storage import LocalStorage, attachment_disposition

files = Blueprint("files", __name__, url_prefix="/v1")


class LinkRefused(BackdropError):
    code = "invalid_signature"
    http_status = 403


@files.get("/files/<path:key>")
def download(key: str) -> Response:
    storage = ctx().storage
    if not isinstance(storage, LocalStorage):
        raise NotFound("this server does not serve files; use the presigned URLs of the job")
    filename = request.args.get("filename")
    try:
        expires = int(request.args.get("expires", ""))
    except ValueError:
        raise LinkRefused("the link is malformed (expires)") from None
    if not storage.verify_url_signature(key, expires, request.args.get("signature", ""), filename):
        raise LinkRefused("the link is invalid or has expired")
    try:
        path = storage.open_path(key)
    except (ValueError, BackdropError):
        raise NotFound("no such file (deleted or expired)") from None
    response = send_file(path, mimetype=storage.content_type(key), max_age=0, conditional=True)
    if filename:
        response.headers["Content-Disposition"] = attachment_disposition(filename)
    return response
