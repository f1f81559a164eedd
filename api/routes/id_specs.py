"""The catalogue of ID-photo specs: what each document asks of its photo, with the source of each number."""

from __future__ import annotations

from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from api.schemas import AUTHENTICATED, errors, json_response, operation_id
from common.id_specs import IdSpec, list_specs

id_specs = APIBlueprint(
    "id_specs",
    __name__,
    url_prefix="/v1",
    abp_tags=[Tag(name="id photos")],
    abp_security=[{"bearer": []}, {"apiKey": []}],
    operation_id_callback=operation_id,
)


class IdSpecList(BaseModel):
    """The catalogue of ID-photo specs."""

    specs: list[IdSpec]


@id_specs.get("/id-specs", responses={200: json_response(IdSpecList, "the catalogue"), **errors(*AUTHENTICATED)})
def list_id_specs() -> Response:
    """Every spec of the catalogue: use its `id` in `id_spec`."""
    return jsonify(IdSpecList(specs=list_specs()).model_dump(mode="json"))
