"""A client generated from the served OpenAPI document (openapi-python-client), used as generated: it
submits the sample portrait, polls the job to the end and downloads the result through the API."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from tests.integration.stack import REPO_ROOT, Stack, http

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "backdrop_generated_client"
PORTRAIT = REPO_ROOT / "examples" / "portrait.jpg"
GENERATE_TIMEOUT = 120
JOB_TIMEOUT = 120
# No formatter run on the generated code (post_hooks), a package name of its own.
GENERATOR_CONFIG = f"post_hooks: []\nproject_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\n"


@pytest.fixture(scope="module")
def generated(stack_with_worker: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModuleType, str]]:
    """The generated package, imported, and what the generator printed."""
    if not GENERATOR.is_file():
        pytest.fail(f"openapi-python-client is not installed beside {sys.executable} (a dev dependency)")
    root = tmp_path_factory.mktemp("generated-client")
    document = http("GET", f"{stack_with_worker.api_url}/openapi.json")
    assert document.status == 200
    (root / "openapi.json").write_bytes(document.body)
    (root / "config.yaml").write_text(GENERATOR_CONFIG)
    finished = subprocess.run(
        [str(GENERATOR), "generate", "--path", "openapi.json", "--config", "config.yaml", "--meta", "none"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=GENERATE_TIMEOUT,
        check=False,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE), output
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def portrait_size() -> tuple[int, int]:
    with Image.open(PORTRAIT) as portrait:
        return portrait.size


def part(name: str) -> ModuleType:
    """A module of the generated package."""
    return importlib.import_module(f"{PACKAGE}.{name}")


def client_of(stack: Stack, generated: tuple[ModuleType, str]) -> Any:
    """The generated client of the stack's API, with its key (``Authorization: Bearer``)."""
    return generated[0].AuthenticatedClient(base_url=stack.api_url, token=stack.token, timeout=60.0)


def test_the_generator_reads_every_operation_without_warnings(generated: tuple[ModuleType, str]) -> None:
    _, output = generated
    assert "Warning" not in output and "Cannot parse" not in output, output


def test_the_generated_client_submits_polls_and_downloads(
    stack_with_worker: Stack, generated: tuple[ModuleType, str]
) -> None:
    create_job, get_job, download, models, types = map(
        part, ("api.jobs.create_job", "api.jobs.get_job", "api.files.download", "models", "types")
    )
    with client_of(stack_with_worker, generated) as client:
        submit_poll_and_download(client, create_job, get_job, download, models, types)


def submit_poll_and_download(
    client: object,
    create_job: ModuleType,
    get_job: ModuleType,
    download: ModuleType,
    models: ModuleType,
    types: ModuleType,
) -> None:
    photo = types.File(payload=io.BytesIO(PORTRAIT.read_bytes()), file_name="portrait.jpg", mime_type="image/jpeg")
    form = models.JobForm(image=photo, background="red", outputs=[models.OutputKind.COMPOSITE, models.OutputKind.MATTE])
    created = create_job.sync_detailed(client=client, body=form)
    assert created.status_code == 202, created.content
    job = created.parsed
    assert isinstance(job, models.JobModel) and job.status == models.JobModelStatus.QUEUED
    assert created.headers["location"] == f"/v1/jobs/{job.id}"

    deadline = time.monotonic() + JOB_TIMEOUT
    while job.status.value in ("queued", "processing"):
        assert time.monotonic() < deadline, f"job {job.id} still {job.status.value} after {JOB_TIMEOUT} s"
        time.sleep(0.2)
        job = get_job.sync(job_id=job.id, client=client)
        assert isinstance(job, models.JobModel)
    assert job.status == models.JobModelStatus.SUCCEEDED, job.error
    assert job.finished_at >= job.created_at  # parsed as datetimes, from format: date-time
    assert sorted(job.results.additional_properties) == ["composite", "matte"]

    composite = job.results["composite"]
    link = urlsplit(composite.url)
    query = {name: values[0] for name, values in parse_qs(link.query).items()}
    key = link.path.removeprefix("/v1/files/")
    file = download.sync(
        key, client=client, expires=int(query["expires"]), signature=query["signature"], filename=query["filename"]
    )
    assert isinstance(file, types.File), file
    data = file.payload.read()
    assert len(data) == composite.bytes_  # the generator's name for a field called bytes
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        assert image.size == (composite.width, composite.height) == portrait_size()


def test_the_generated_client_reports_errors_as_the_error_model(
    stack_with_worker: Stack, generated: tuple[ModuleType, str]
) -> None:
    get_job, models = part("api.jobs.get_job"), part("models")
    with client_of(stack_with_worker, generated) as client:
        missing = get_job.sync(job_id="0" * 32, client=client)
    assert isinstance(missing, models.ErrorBody)
    assert missing.error.code == models.ErrorDetailCode.NOT_FOUND


def test_the_generated_client_runs_a_batch_and_downloads_its_zip(
    stack_with_worker: Stack, generated: tuple[ModuleType, str]
) -> None:
    create_batch, get_batch, batch_zip, delete_batch, models, types = map(
        part,
        (
            "api.batches.create_batch",
            "api.batches.get_batch",
            "api.batches.batch_zip",
            "api.batches.delete_batch",
            "models",
            "types",
        ),
    )
    photos = [
        types.File(payload=io.BytesIO(PORTRAIT.read_bytes()), file_name=f"{name}.jpg", mime_type="image/jpeg")
        for name in ("a", "b")
    ]
    with client_of(stack_with_worker, generated) as client:
        batch = create_batch.sync(client=client, body=models.BatchForm(images=photos, background="white"))
        assert isinstance(batch, models.BatchModel) and batch.total == 2, batch
        deadline = time.monotonic() + JOB_TIMEOUT
        while batch.status == models.BatchModelStatus.PENDING:
            assert time.monotonic() < deadline, f"batch {batch.id} still pending after {JOB_TIMEOUT} s"
            time.sleep(0.2)
            batch = get_batch.sync(batch.id, client=client)
        assert batch.counts.succeeded == 2, batch.counts
        archive = batch_zip.sync(batch.id, client=client)
        assert delete_batch.sync_detailed(batch.id, client=client).status_code == 204
        gone = get_batch.sync(batch.id, client=client)
    assert isinstance(archive, types.File)
    with zipfile.ZipFile(archive.payload) as opened:
        assert [name.split("-", 1)[1] for name in opened.namelist()] == [f"{job.id}.jpg" for job in batch.jobs]
    assert isinstance(gone, models.ErrorBody) and gone.error.code == models.ErrorDetailCode.NOT_FOUND
