"""The OpenAPI document describes every route, is valid OpenAPI 3.1, and real responses match it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from tests.integration.stack import Stack, http
from tests.integration.test_service import rgba_photo

# Routes that are not part of the API: the pages and their static files.
NOT_API = {"/", "/docs", "/docs/<path:name>", "/demo/<path:filename>", "/static/<path:filename>", "/openapi.json"}


@pytest.fixture(scope="module")
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    stack = stack_factory("local")
    stack.start_worker()
    stack.start_api()
    return stack


@pytest.fixture(scope="module")
def document(stack: Stack) -> dict[str, Any]:
    response = http("GET", f"{stack.api_url}/openapi.json")
    assert response.status == 200
    return response.json()


def response_schema(document: dict[str, Any], path: str, method: str, status: int) -> Draft202012Validator:
    responses = document["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} does not document {status}"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": document["components"]})


def test_document_is_valid_openapi_31(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_is_documented(stack: Stack, document: dict[str, Any]) -> None:
    from api.app import create_app

    app = create_app(stack.settings)
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    for rule in app.url_map.iter_rules():
        if rule.rule in NOT_API or rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, f"{method} {rule.rule} is not in /openapi.json"


def test_real_responses_match_the_document(stack: Stack, document: dict[str, Any]) -> None:
    created = stack.submit(rgba_photo(1), background="blue", outputs="composite,matte")
    assert created.status == 202
    response_schema(document, "/v1/jobs", "post", 202).validate(created.json())
    finished = stack.wait_for(created.json()["id"])
    response_schema(document, "/v1/jobs/{job_id}", "get", 200).validate(finished)
    assert finished["status"] == "succeeded"

    error = stack.submit(rgba_photo(1), background="purple")
    response_schema(document, "/v1/jobs", "post", 422).validate(error.json())
    missing = stack.poll("0" * 32)
    response_schema(document, "/v1/jobs/{job_id}", "get", 404).validate(missing.json())
    unauthorized = stack.poll("0" * 32, token=None)
    response_schema(document, "/v1/jobs/{job_id}", "get", 401).validate(unauthorized.json())
    response_schema(document, "/healthz", "get", 200).validate(http("GET", f"{stack.api_url}/healthz").json())
    response_schema(document, "/readyz", "get", 200).validate(http("GET", f"{stack.api_url}/readyz").json())
    canceled = stack.request("POST", f"/v1/jobs/{finished['id']}/cancel")
    response_schema(document, "/v1/jobs/{job_id}/cancel", "post", 200).validate(canceled.json())


def test_a_wrong_body_fails_the_schema(document: dict[str, Any]) -> None:
    validator = response_schema(document, "/v1/jobs/{job_id}", "get", 200)
    assert not validator.is_valid({"id": "x", "status": "exploded"})


def test_docs_page_is_served(stack: Stack) -> None:
    page = http("GET", f"{stack.api_url}/docs")
    assert page.status == 200 and b"/openapi.json" in page.body
    assert http("GET", f"{stack.api_url}/docs/docs.js").status == 200
