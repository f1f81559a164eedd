"""``backdrop replace --server``: the photos go to a Backdrop server as one batch; no model is loaded here."""

from __future__ import annotations

import urllib.error
import uuid
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from common.client import ApiError, BackdropClient
from common.errors import BackdropError, InvalidOption
from common.imaging import probe_image
from common.options import JobOptions, outputs_text
from worker.cli.photo_files import PhotoFile, collect, report, write_output

BATCH_TIMEOUT_SECONDS = 24 * 3600.0
# Only the file type is checked here; the server applies its own size limits.
PROBE_MAX_PIXELS = 10**12
FormFields = dict[str, str | int | bool]


def server_fields(values: Mapping[str, Any]) -> FormFields:
    """The batch's form fields from the options given on the command line, checked here first with
    ``JobOptions`` so that a typo is a usage error. Options left unset are not sent: the server decides."""
    background = values.get("background")
    if background is not None and Path(background).is_file():
        raise click.BadParameter(
            "a background image file cannot be sent with --server (batches take no background_image); "
            "use a colour, transparent or blur",
            param_hint="'--background'",
        )
    try:
        options = JobOptions(**values)
        options.background_spec()
    except InvalidOption as exc:
        raise click.BadParameter(exc.message) from exc
    sent = options.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    return {name: outputs_text(value) if isinstance(value, list) else value for name, value in sent.items()}


def _describe(exc: ApiError | OSError) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, urllib.error.URLError):
        return f"unreachable: {exc.reason}"
    return f"unreadable: {exc.strerror or exc}"


def _finished(batch: dict) -> int:
    counts = batch.get("counts") or {}
    return sum(int(counts.get(name, 0)) for name in ("succeeded", "failed", "canceled"))


def replace_remote(
    inputs: tuple[Path, ...],
    *,
    server: str,
    api_key: str | None,
    values: Mapping[str, Any],
    output: Path,
    keep: bool = False,
) -> None:
    """Send every photo as one batch, follow its progress, download the results into ``output``, then
    delete the batch from the server (its photos and results with it) unless ``keep``."""
    fields = server_fields(values)
    photos = list(collect(inputs))
    if not photos:
        raise click.UsageError("no image files found in the given inputs")

    # A file the server would refuse outright (unreadable, not an image) would refuse the whole batch:
    # it is named here and left out.
    failures: dict[int, str] = {}
    sent: list[int] = []  # indexes into photos, in the batch's submission order
    images: list[bytes] = []
    for index, photo in enumerate(photos):
        try:
            data = photo.source.read_bytes()
            probe_image(data, max_pixels=PROBE_MAX_PIXELS, min_side=1)
        except OSError as exc:
            failures[index] = _describe(exc)
            continue
        except BackdropError as exc:
            failures[index] = f"{exc.code}: {exc.message}"
            continue
        sent.append(index)
        images.append(data)

    written = 0
    if sent:
        client = BackdropClient(server, api_key)
        try:
            written = _run_batch(client, photos, sent, images, fields, output, failures, keep=keep)
        except ApiError as exc:
            raise click.ClickException(f"the server answered {exc.status} {exc.code}: {exc.message}") from exc
        except urllib.error.URLError as exc:
            raise click.ClickException(f"cannot reach {server}: {exc.reason}") from exc
        except TimeoutError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:  # the connection dropped, past the client's retries
            raise click.ClickException(f"lost the connection to {server}: {exc}") from exc

    report(written, len(photos), output, [(photos[index].source, failures[index]) for index in sorted(failures)])


def _run_batch(
    client: BackdropClient,
    photos: list[PhotoFile],
    sent: list[int],
    images: list[bytes],
    fields: FormFields,
    output: Path,
    failures: dict[int, str],
    *,
    keep: bool,
) -> int:
    """Submit, wait with a progress bar, download, then delete the batch unless ``keep``; returns how
    many photos were written."""
    # A key of its own, so that the client may send the batch again when the connection drops.
    batch = client.submit_batch(
        images, filenames=[photos[index].source.name for index in sent], idempotency_key=uuid.uuid4().hex, **fields
    )
    batch_id = batch["id"]
    with tqdm(total=len(sent), desc="replacing", unit="photo", disable=None) as bar:

        def progress(state: dict) -> None:
            bar.update(max(0, _finished(state) - bar.n))

        try:
            client.wait_batch(batch_id, timeout=BATCH_TIMEOUT_SECONDS, on_progress=progress)
        except KeyboardInterrupt:  # nothing of it is wanted any more: deleted (or only canceled, when kept)
            with suppress(ApiError, OSError):
                if keep:
                    client.cancel_batch(batch_id)
                else:
                    client.delete_batch(batch_id)
            raise

    remote_jobs = list(client.iter_batch_jobs(batch_id))
    if len(remote_jobs) != len(sent):
        raise click.ClickException(f"batch {batch_id} has {len(remote_jobs)} jobs, {len(sent)} photos were sent")
    written = 0
    for index, remote in zip(sent, remote_jobs, strict=True):
        photo = photos[index]
        status = remote.get("status")
        if status != "succeeded":
            error = remote.get("error") or {"code": status or "unknown", "message": f"the job is {status}"}
            failures[index] = f"{error.get('code')}: {error.get('message')}"
            continue
        try:
            for kind, result in (remote.get("results") or {}).items():
                data = client.download(result["url"])
                write_output(output, photo, kind, str(result.get("format", "jpeg")), data)
        except (ApiError, urllib.error.URLError) as exc:
            failures[index] = f"{_describe(exc)} (downloading its {kind})"
            continue
        except OSError as exc:
            failures[index] = f"unwritable: {exc.strerror or exc} (its {kind})"
            continue
        written += 1
    if not keep:
        try:
            client.delete_batch(batch_id)
        except (ApiError, OSError) as exc:
            click.echo(f"warning: batch {batch_id} is left on the server, to expire there ({_describe(exc)})", err=True)
    return written
