"""The OpenAPI document: flask-openapi3 builds it from the route declarations and their models; this
module adds what flask-openapi3 cannot take from them, so that the served document is exact.

- a request body that may come as JSON beside the operation's form (``api.schemas.JSON_BODIES``);
- no 422 on operations that validate nothing (flask-openapi3 adds one, as an array, to every operation
  that does not declare its own);
- descriptions as plain CommonMark: flask-openapi3 joins a docstring's lines with ``<br/>``, and
  docstrings write literals in reStructuredText;
- the ``X-Request-Id`` header every operation takes (a hook of the application reads it, not a route);
- the operations of one path from two blueprints (``GET`` and ``PUT /v1/files/{key}``): flask-openapi3
  keeps only the last blueprint's.
"""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, OpenAPI, Server

from api.schemas import JSON_BODIES
from common.logging_setup import MAX_REQUEST_ID_LENGTH
from common.settings import Settings

REF_PREFIX = "#/components/schemas/"

SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key (`backdrop keys create`), sent as `Authorization: Bearer <key>`",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Api-Key",
        "description": "the same API key, sent as `X-Api-Key: <key>` instead",
    },
}


def servers(settings: Settings) -> list[Server]:
    """Where clients reach this deployment: its public base URL."""
    return [Server(url=settings.public_base_url.rstrip("/"), description="this deployment")]


REQUEST_ID_PARAMETER = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "description": "your own id for the request, sent back in `X-Request-Id` and written in the logs: a token of "
    "letters, digits and `._:/+=-` (another value is replaced by a new id)",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_REQUEST_ID_LENGTH},
}

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class DocumentedOpenAPI(OpenAPI):
    """flask-openapi3's application, serving the finished document."""

    def register_api(self, api: APIBlueprint, **options: Any) -> None:
        for path, item in api.paths.items():
            known = self.paths.get(path)
            for method in HTTP_METHODS if known is not None else ():
                if getattr(item, method) is None and getattr(known, method) is not None:
                    setattr(item, method, getattr(known, method))
        super().register_api(api, **options)

    def generate_spec_json(self) -> None:
        super().generate_spec_json()
        finish_document(self.spec_json)


def finish_document(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for item in document.get("paths", {}).values():
        for operation in item.values():
            _drop_generated_validation_errors(operation)
            operation.setdefault("parameters", []).append(REQUEST_ID_PARAMETER)
            _add_json_body(operation, schemas)
            for key in ("summary", "description"):
                if key in operation:
                    operation[key] = plain_text(operation[key])
    for schema in schemas.values():
        schema.pop("$defs", None)  # each one is a component of its own, which the references name
        _plain_descriptions(schema)
    _plain_descriptions(document["components"].get("securitySchemes", {}))


def plain_text(text: str) -> str:
    """A docstring as CommonMark: its lines joined, its reStructuredText literals as code spans."""
    return " ".join(text.replace("<br/>", " ").replace("``", "`").split())


def _plain_descriptions(schema: Any) -> None:
    """Every description in a model's schema (docstrings included) as plain CommonMark."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "description" and isinstance(value, str):
                schema[key] = plain_text(value)
            else:
                _plain_descriptions(value)
    elif isinstance(schema, list):
        for item in schema:
            _plain_descriptions(item)


def _drop_generated_validation_errors(operation: dict[str, Any]) -> None:
    """flask-openapi3 declares a 422 with an array body on every operation lacking one; the API's own
    422s are declared where a request can fail validation, with the error object the server sends."""
    response = operation.get("responses", {}).get("422")
    schema = (response or {}).get("content", {}).get("application/json", {}).get("schema", {})
    if schema.get("type") == "array":
        del operation["responses"]["422"]


def _add_json_body(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    model = JSON_BODIES.get(operation.get("operationId", ""))
    if model is None:
        return
    schema = model.model_json_schema(ref_template=REF_PREFIX + "{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    content = operation["requestBody"]["content"]
    content["application/json"] = {"schema": {"$ref": REF_PREFIX + model.__name__}}
    examples = schema.get("examples")
    if examples:
        content["application/json"]["example"] = examples[0]
