"""Every error code is declared in the OpenAPI document, and every code served is one of them."""

from __future__ import annotations

import io

from flask.testing import FlaskClient

from common.errors import BackdropError, error_codes
from tests.app.conftest import png


def _all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _all_subclasses(sub)
    return found


def test_the_document_enumerates_every_error_code(client: FlaskClient) -> None:
    schema = client.get("/openapi.json").json["components"]["schemas"]["ErrorDetail"]["properties"]["code"]
    assert schema["enum"] == error_codes()
    assert {cls.code for cls in _all_subclasses(BackdropError)} <= set(schema["enum"])
    assert {"no_face", "resolution_too_low", "method_not_allowed", "payload_too_large"} <= set(schema["enum"])


def test_codes_served_are_declared(client: FlaskClient, auth: dict) -> None:
    declared = set(error_codes())
    responses = [
        client.put("/v1/jobs", headers=auth),
        client.get("/v1/jobs/nope", headers=auth),
        client.get("/v1/jobs", headers={}),
        client.post("/v1/jobs", data={"image": (io.BytesIO(b"text"), "a.txt")}, headers=auth),
        client.post("/v1/jobs", data={"image": (io.BytesIO(png()), "a.png"), "id_spec": "mars"}, headers=auth),
        client.post("/v1/jobs", data={"image": (io.BytesIO(png()), "a.png"), "quality": "0"}, headers=auth),
    ]
    codes = [response.json["error"]["code"] for response in responses]
    assert codes == [
        "method_not_allowed",
        "not_found",
        "unauthorized",
        "unsupported_image",
        "unknown_id_spec",
        "invalid_option",
    ]
    assert set(codes) <= declared


def test_operation_ids_are_readable_and_unique(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").json["paths"]
    ids = [operation["operationId"] for path in paths.values() for operation in path.values()]
    assert len(ids) == len(set(ids))
    assert {"createJob", "getJob", "cancelJob", "deleteJob", "createBatch", "getBatch", "listIdSpecs"} <= set(ids)
    assert all(operation_id.isalnum() and operation_id[0].islower() for operation_id in ids)
