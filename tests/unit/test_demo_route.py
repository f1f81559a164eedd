"""The demo page blueprint: the page, its static files, path safety and the security headers."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.routes.demo import DEMO_DIR, demo

FORM_IDS = ("photo", "custom-color", "format", "api-key", "submit", "status", "result", "original", "download", "error")


@pytest.fixture
def client() -> FlaskClient:
    app = Flask(__name__)
    app.register_blueprint(demo)
    return app.test_client()


@dataclass
class Answer:
    status: int
    mimetype: str | None
    headers: dict[str, str]
    body: bytes


def get(client: FlaskClient, path: str) -> Answer:
    """The response, read and closed (file responses hold the file open until closed)."""
    with client.get(path) as response:
        return Answer(response.status_code, response.mimetype, dict(response.headers), response.get_data())


def csp_directives(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


def test_the_page_is_html_with_the_form(client: FlaskClient) -> None:
    response = get(client, "/")
    assert response.status == 200
    assert response.mimetype == "text/html"
    html = response.body.decode()
    for element_id in FORM_IDS:
        assert f'id="{element_id}"' in html, element_id
    for background in ("red", "blue", "green", "white", "transparent"):
        assert f'data-background="{background}"' in html, background
    assert '<input type="color" id="custom-color"' in html
    # Offline and CSP-friendly: no third-party origins, no inline scripts or styles.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "<style" not in html
    assert "style=" not in html


@pytest.mark.parametrize(
    ("path", "mimetype"),
    [("/demo/demo.js", "text/javascript"), ("/demo/demo.css", "text/css"), ("/demo/index.html", "text/html")],
)
def test_static_files_have_their_content_type(client: FlaskClient, path: str, mimetype: str) -> None:
    response = get(client, path)
    assert response.status == 200
    assert response.mimetype == mimetype
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.body == (DEMO_DIR / path.rsplit("/", 1)[1]).read_bytes()


@pytest.mark.parametrize(
    "path",
    ["/demo/../app.py", "/demo/..%2fapp.py", "/demo/%2e%2e/app.py", "/demo/../routes/demo.py", "/demo/missing.js"],
)
def test_nothing_outside_the_demo_folder_is_served(client: FlaskClient, path: str) -> None:
    assert get(client, path).status == 404


def test_the_page_has_a_strict_content_security_policy(client: FlaskClient) -> None:
    response = get(client, "/")
    assert response.status == 200
    directives = csp_directives(response.headers["Content-Security-Policy"])
    assert directives["default-src"] == ["'self'"]
    assert directives["connect-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    # Results may be presigned URLs on another origin: images (only) may come from anywhere.
    assert {"'self'", "blob:", "data:"} <= set(directives["img-src"])
    assert {"http:", "https:"} <= set(directives["img-src"])
    assert not any("unsafe" in value for values in directives.values() for value in values)


def test_the_script_calls_the_api_relative_to_the_page() -> None:
    script = (DEMO_DIR / "demo.js").read_text()
    assert '"v1/jobs"' in script
    assert "Retry-After" in script
    assert "Authorization" in script
    assert "localStorage" in script
