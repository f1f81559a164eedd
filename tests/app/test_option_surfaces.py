"""Every surface accepts the options ``JobOptions`` defines for it, and nothing else: the multipart
form of POST /v1/jobs, a batch (multipart and JSON), the command line and the OpenAPI document."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from common.options import JobOptions, Surface
from tests.app.conftest import png

# A value other than the default for every option, in the two kinds of job (background replacement
# and ID photos): a new option must be added here to be tested.
SHARED: dict[str, Any] = {
    "background": "#102030",
    "format": "png",
    "quality": 55,
    "webhook_url": "https://example.invalid/hook",
    "webhook_events": ["completed", "started"],
}
REPLACEMENT: dict[str, Any] = {**SHARED, "outputs": ["cutout", "matte"], "decontaminate": False}
ID_PHOTO: dict[str, Any] = {
    **SHARED,
    "id_spec": ["custom"],
    "custom_size": "30x40mm",
    "custom_dpi": 350.0,
    "head_ratio": "0.6-0.7",
    "crown_margin": "0.05-0.1",
    "max_kb": 200.0,
    "min_kb": 10.0,
    "sheet": "a4",
    "cut_guides": False,
    "matte_source": "alpha",
}
SAMPLES = {**REPLACEMENT, **ID_PHOTO}
KINDS = {"replacement": REPLACEMENT, "id photo": ID_PHOTO}
INPUT_FIELDS = {"image", "image_url", "background_image"}


def _form_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def test_samples_cover_every_option() -> None:
    assert set(SAMPLES) == set(JobOptions.model_fields)
    defaults = JobOptions()
    assert all(getattr(defaults, name) != value for name, value in SAMPLES.items())
    for sample in KINDS.values():
        assert JobOptions(**sample).model_dump(mode="json") | sample == JobOptions(**sample).model_dump(mode="json")


def test_the_openapi_document_declares_each_surfaces_options(client: FlaskClient) -> None:
    schemas = client.get("/openapi.json").json["components"]["schemas"]
    assert set(schemas["JobForm"]["properties"]) - INPUT_FIELDS == JobOptions.names(Surface.JOB)
    assert set(schemas["BatchForm"]["properties"]) - {"images"} == JobOptions.names(Surface.BATCH)
    assert set(schemas["JobOptions"]["properties"]) == set(JobOptions.model_fields)  # the job's public options
    for name in JobOptions.names(Surface.JOB):
        declared = schemas["JobForm"]["properties"][name]
        assert declared.get("description") == JobOptions.model_fields[name].description


def post_job(client: FlaskClient, auth: dict, fields: dict[str, str]) -> TestResponse:
    """``POST /v1/jobs`` with these form fields and a small PNG."""
    return client.post(
        "/v1/jobs",
        data={**fields, "image": (io.BytesIO(png()), "p.png")},
        headers=auth,
        content_type="multipart/form-data",
    )


@pytest.mark.parametrize("kind", KINDS)
def test_the_job_form_accepts_every_job_option(app: Flask, client: FlaskClient, auth: dict, kind: str) -> None:
    sample = KINDS[kind]
    fields = {name: _form_text(value) for name, value in sample.items() if name in JobOptions.names(Surface.JOB)}
    response = post_job(client, auth, fields)
    assert response.status_code == 202, response.json
    stored = app.extensions["backdrop"].jobs.get(response.json["id"]).options.model_dump(mode="json")
    assert {name: stored[name] for name in sample} == sample
    assert response.json["options"] == stored


@pytest.mark.parametrize("kind", KINDS)
def test_a_json_batch_accepts_every_batch_option_and_refuses_the_others(
    app: Flask, client: FlaskClient, auth: dict, kind: str
) -> None:
    options = {name: value for name, value in KINDS[kind].items() if name in JobOptions.names(Surface.BATCH)}
    body = {"image_urls": ["https://example.invalid/a.jpg"], "options": options}
    response = client.post("/v1/batches", json=body, headers=auth)
    assert response.status_code == 202, response.json
    api = app.extensions["backdrop"]
    job = api.jobs.get(response.json["jobs"][0]["id"])
    per_job = {name: value for name, value in options.items() if name != "webhook_url"}
    assert {name: job.options.model_dump(mode="json")[name] for name in per_job} == per_job
    assert api.batches.get(response.json["id"]).webhook_url == SAMPLES["webhook_url"]
    for name in sorted(set(JobOptions.model_fields) - JobOptions.names(Surface.BATCH)):
        refused = client.post("/v1/batches", json={**body, "options": {name: SAMPLES[name]}}, headers=auth)
        assert (refused.status_code, refused.json["error"]["code"]) == (422, "invalid_option"), name


def test_a_multipart_batch_accepts_every_batch_option(app: Flask, client: FlaskClient, auth: dict) -> None:
    fields = {name: _form_text(value) for name, value in REPLACEMENT.items() if name in JobOptions.names(Surface.BATCH)}
    response = client.post(
        "/v1/batches",
        data={**fields, "images": [(io.BytesIO(png()), "a.png"), (io.BytesIO(png(seed=2)), "b.png")]},
        headers=auth,
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.json
    assert response.json["total"] == 2
    job = app.extensions["backdrop"].jobs.get(response.json["jobs"][1]["id"])
    assert job.options.quality == SAMPLES["quality"] and job.options.outputs == SAMPLES["outputs"]


@pytest.mark.parametrize(("name", "text"), [("head_ratio", "0.75"), ("crown_margin", "0.1")])
def test_form_text_that_looks_like_a_number_stays_text(
    app: Flask, client: FlaskClient, auth: dict, name: str, text: str
) -> None:
    # The form parser reads each part as JSON first: "0.75" must still reach a text option as text.
    fields = {"id_spec": "custom", "custom_size": "600x800px", name: text}
    response = post_job(client, auth, fields)
    assert response.status_code == 202, response.json
    stored = app.extensions["backdrop"].jobs.get(response.json["id"]).options
    assert getattr(stored, name) == text
