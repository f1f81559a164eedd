"""The OpenAPI document describes every route, is valid OpenAPI 3.1, and real responses match it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from common.errors import error_codes
from tests.integration.stack import Stack, http, multipart
from tests.integration.test_service import rgba_photo

# Routes that are not part of the API: the pages and their static files.
NOT_API = {"/", "/docs", "/docs/<path:name>", "/demo/<path:filename>", "/static/<path:filename>", "/openapi.json"}


@pytest.fixture(scope="module")
def stack(stack_with_worker: Stack) -> Stack:
    return stack_with_worker


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


# --- the document is exact -------------------------------------------------------------------------


def schema_of(document: dict[str, Any], name: str) -> dict[str, Any]:
    return document["components"]["schemas"][name]


def validator_of(document: dict[str, Any], name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": document["components"]})


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, operation) for path, item in document["paths"].items() for method, operation in item.items()]


def test_file_parts_are_binary_with_an_image_encoding(document: dict[str, Any]) -> None:
    job_form, batch_form = schema_of(document, "JobForm"), schema_of(document, "BatchForm")
    for prop in (job_form["properties"]["image"], job_form["properties"]["background_image"]):
        assert (prop["type"], prop["format"]) == ("string", "binary") and "anyOf" not in prop
    assert batch_form["properties"]["images"]["items"] == {"type": "string", "format": "binary"}
    assert "images" in batch_form["required"]
    job_content = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert job_content["encoding"]["image"]["contentType"] == "image/*"
    assert job_content["encoding"]["background_image"]["contentType"] == "image/*"
    batch_content = document["paths"]["/v1/batches"]["post"]["requestBody"]["content"]
    assert batch_content["multipart/form-data"]["encoding"]["images"]["contentType"] == "image/*"


def test_a_job_takes_exactly_one_of_image_and_image_url(document: dict[str, Any]) -> None:
    form = validator_of(document, "JobForm")
    assert form.is_valid({"image": "photo bytes", "background": "red"})
    assert form.is_valid({"image_url": "https://images.example/p.jpg"})
    assert not form.is_valid({"image": "photo bytes", "image_url": "https://images.example/p.jpg"})
    assert not form.is_valid({"background": "red"})
    assert not form.is_valid({"image": "photo bytes", "colour": "red"})  # unknown fields are refused


def test_request_fields_are_never_null_and_unknown_ones_are_refused(document: dict[str, Any]) -> None:
    for name in ("JobForm", "BatchForm", "BatchJson", "BatchOptions"):
        schema = schema_of(document, name)
        assert schema["additionalProperties"] is False, name
        for field, prop in schema["properties"].items():
            assert {"type": "null"} not in prop.get("anyOf", []) and prop.get("default", 0) is not None, (name, field)
    for path, method, operation in operations(document):
        for parameter in operation.get("parameters", []):
            assert {"type": "null"} not in parameter["schema"].get("anyOf", []), (method, path, parameter["name"])


def test_a_batch_is_multipart_or_json(document: dict[str, Any]) -> None:
    content = document["paths"]["/v1/batches"]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    body = validator_of(document, "BatchJson")
    assert body.is_valid({"image_urls": ["https://images.example/a.jpg"], "options": {"background": "white"}})
    assert body.is_valid({"keys": ["uploads/abc/photo.jpg"]})
    assert not body.is_valid({})  # at least one photo
    assert not body.is_valid({"image_urls": [], "keys": []})
    assert not body.is_valid({"image_urls": ["https://images.example/a.jpg"], "options": {"quality": None}})
    batch = schema_of(document, "BatchModel")["properties"]
    assert batch["status"]["enum"] == ["pending", "completed"]
    assert batch["counts"] == {"$ref": "#/components/schemas/BatchCounts"}
    assert set(schema_of(document, "BatchCounts")["properties"]) == {
        "queued",
        "processing",
        "succeeded",
        "failed",
        "canceled",
    }


def test_every_error_is_the_object_the_server_sends(document: dict[str, Any]) -> None:
    assert schema_of(document, "ErrorDetail")["properties"]["code"]["enum"] == error_codes()
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400 or (path, status) == ("/readyz", "503"):
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
            if status in ("429", "503"):
                assert response["headers"]["Retry-After"]["required"] is True, (method, path, status)
    assert "422" not in document["paths"]["/healthz"]["get"]["responses"]  # nothing there to validate
    assert "422" in document["paths"]["/v1/files/{key}"]["get"]["responses"]  # its query is validated


def test_binary_answers_have_their_media_types(document: dict[str, Any]) -> None:
    binary = {"type": "string", "format": "binary"}
    zip_content = document["paths"]["/v1/batches/{batch_id}/results.zip"]["get"]["responses"]["200"]["content"]
    assert zip_content["application/zip"]["schema"] == binary
    file_content = document["paths"]["/v1/files/{key}"]["get"]["responses"]["200"]["content"]
    assert {"image/jpeg", "image/png", "image/webp", "application/json"} <= set(file_content)
    assert all(media["schema"] == binary for media in file_content.values())


def test_headers_timestamps_servers_and_security_are_declared(document: dict[str, Any]) -> None:
    created = document["paths"]["/v1/jobs"]["post"]["responses"]
    assert created["202"]["headers"]["Location"]["required"] is True
    assert created["202"]["headers"]["Retry-After"]["required"] is True
    assert {
        "Preference-Applied",
        "Idempotent-Replayed",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
    } <= set(created["202"]["headers"])
    assert "Location" in document["paths"]["/v1/batches"]["post"]["responses"]["202"]["headers"]
    assert "Retry-After" in document["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]["200"]["headers"]
    job = schema_of(document, "JobModel")["properties"]
    assert job["created_at"]["format"] == job["expires_at"]["format"] == "date-time"
    assert {"type": "string", "format": "date-time"} in job["finished_at"]["anyOf"]
    assert schema_of(document, "ResultModel")["properties"]["expires_at"]["format"] == "date-time"
    assert schema_of(document, "JobForm")["properties"]["outputs"]["type"] == "array"
    assert schema_of(document, "JobForm")["properties"]["webhook_events"]["type"] == "array"
    assert document["servers"] and document["servers"][0]["url"].startswith("http")
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-Api-Key"}
    for path, method, operation in operations(document):
        public = path in ("/healthz", "/readyz") or path.startswith("/v1/files/")
        assert operation.get("security") == (None if public else [{"bearer": []}, {"apiKey": []}]), (method, path)


def test_examples_follow_their_schemas(document: dict[str, Any]) -> None:
    checked = 0
    for name, schema in document["components"]["schemas"].items():
        for example in schema.get("examples", []):
            validator_of(document, name).validate(example)
            checked += 1
    for _, _, operation in operations(document):
        bodies = [*operation.get("requestBody", {}).get("content", {}).values()]
        bodies += [
            media for response in operation["responses"].values() for media in response.get("content", {}).values()
        ]
        for media in bodies:
            if "example" in media:
                Draft202012Validator({**media["schema"], "components": document["components"]}).validate(
                    media["example"]
                )
                checked += 1
    assert checked >= 10


def descriptions(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["description"]] if isinstance(node.get("description"), str) else []
        return own + [text for value in node.values() for text in descriptions(value)]
    return [text for item in node for text in descriptions(item)] if isinstance(node, list) else []


def test_descriptions_are_plain_text(document: dict[str, Any]) -> None:
    """CommonMark without HTML: no tags (a <placeholder> outside a code span reads as one), no
    reStructuredText literals, no line breaks of a docstring."""
    texts = descriptions(document) + [op.get("summary", "") for _, _, op in operations(document)]
    assert len(texts) > 100
    for text in texts:
        outside_code = "".join(text.split("`")[::2])
        assert not re.search(r"<[A-Za-z/]|``|\n", outside_code), text


def test_replays_and_batches_send_the_documented_headers(stack: Stack) -> None:
    headers = {"Idempotency-Key": "openapi-replay"}
    first = stack.submit(rgba_photo(2), headers=headers, background="white")
    replay = stack.submit(rgba_photo(2), headers=headers, background="white")
    assert first.status == 202
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["location"] == first.headers["location"] == f"/v1/jobs/{first.json()['id']}"

    body, content_type = multipart({"background": "green"}, {"images": ("a.png", rgba_photo(3))})
    created = stack.request("POST", "/v1/batches", body, {"Content-Type": content_type})
    assert created.status == 202 and created.headers["location"] == f"/v1/batches/{created.json()['id']}"
    stack.wait_for(created.json()["jobs"][0]["id"])
    archive = f"/v1/batches/{created.json()['id']}/results.zip"
    assert stack.request("GET", archive).headers["content-type"] == "application/zip"
    as_bytes = stack.request("GET", archive, headers={"Accept": "application/octet-stream"})
    assert as_bytes.status == 200 and as_bytes.headers["content-type"] == "application/octet-stream"
    assert as_bytes.body.startswith(b"PK")


def test_a_result_is_served_whole_or_in_part_as_documented(stack: Stack, document: dict[str, Any]) -> None:
    created = stack.submit(rgba_photo(4), background="blue")
    url = stack.wait_for(created.json()["id"])["results"]["composite"]["url"]
    responses = document["paths"]["/v1/files/{key}"]["get"]["responses"]
    whole = http("GET", url)
    assert whole.status == 200 and whole.headers["content-type"] in responses["200"]["content"]
    part = http("GET", url, headers={"Range": "bytes=0-9"})
    assert part.status == 206 and part.body == whole.body[:10]
    assert (
        part.headers["content-range"] == f"bytes 0-9/{len(whole.body)}"
        and "Content-Range" in responses["206"]["headers"]
    )
    beyond = http("GET", url, headers={"Range": f"bytes={len(whole.body) + 10}-"})
    assert beyond.status == 416 and "416" in responses
    response_schema(document, "/v1/files/{key}", "get", 416).validate(beyond.json())
