"""The API description: ``/openapi.json`` (generated from the route models) and a page that reads it."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, send_from_directory

docs = Blueprint("docs", __name__)
DOCS_DIR = Path(__file__).resolve().parents[1] / "static" / "docs"


@docs.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(current_app.api_doc)


@docs.get("/docs")
def docs_page() -> Response:
    response = send_from_directory(DOCS_DIR, "index.html", max_age=0)
    response.headers["Content-Security-Policy"] = "default-src 'self'; style-src 'self'; script-src 'self'"
    return response


@docs.get("/docs/<path:name>")
def docs_asset(name: str) -> Response:
    return send_from_directory(DOCS_DIR, name, max_age=300)
