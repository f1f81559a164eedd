"""The demo page: a browser client of the job API, served at ``/`` with its files under ``/demo/``."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

DEMO_DIR = Path(__file__).resolve().parent.parent / "static" / "demo"

# Scripts, styles and API calls stay on this origin. Results may be presigned URLs of another origin
# (S3, MinIO), so images alone may come from anywhere; the original photo is shown from a blob: URL.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data: http: https:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

# Explicit types: the platform's mimetypes table differs between systems (for .js above all).
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

demo = Blueprint("demo", __name__)


def _send(filename: str) -> Response:
    # send_from_directory refuses paths that leave DEMO_DIR (404), such as "../app.py".
    media_type = MEDIA_TYPES.get(Path(filename).suffix.lower())
    return send_from_directory(DEMO_DIR, filename, mimetype=media_type, max_age=0)


@demo.after_request
def _security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@demo.get("/")
def index() -> Response:
    """The demo page."""
    return _send("index.html")


@demo.get("/demo/<path:filename>")
def asset(filename: str) -> Response:
    """The page's script, style sheet and other static files."""
    return _send(filename)
