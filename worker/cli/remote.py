"""``backdrop replace --server``: the photos go to a Backdrop server as one batch; no model is loaded here."""

from __future__ import annotations

import urllib.error
from contextlib import suppress
from pathlib import Path

import click
from tqdm import tqdm

from common.client import ApiError, BackdropClient
from common.errors import BackdropError, InvalidOption
from common.imaging import probe_image
from common.pipeline import ReplaceOptions
from worker.cli.replace import Job, collect_jobs, output_path, report

BATCH_TIMEOUT_SECONDS = 24 * 3600.0
# Only the file type is checked here; the server applies its own size limits.
PROBE_MAX_PIXELS = 10**12
Options = dict[str, str | int | bool | None]


def _server_options(
    background: str, fmt: str | None, quality: int, cutout: bool, matte: bool, decontaminate: bool | None
) -> Options:
    """Form options for the batch, checked here first so that a typo is a usage error."""
    if Path(background).is_file():
        raise click.BadParameter(
            "a background image file cannot be sent with --server (batches take no background_image); "
            "use a colour, transparent or blur",
            param_hint="'--background'",
        )
    outputs = ["composite"] + ["cutout"] * cutout + ["matte"] * matte
    try:
        ReplaceOptions.from_values(background=background, format=fmt, quality=quality, outputs=outputs)
    except InvalidOption as exc:
        raise click.BadParameter(exc.message, param_hint="'--background' / '--format'") from exc
    return {
        "background": background,
        "format": fmt,
        "quality": quality,
        "outputs": ",".join(outputs),
        "decontaminate": decontaminate,
    }


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
    background: str,
    fmt: str | None,
    quality: int,
    output: Path,
    cutout: bool,
    matte: bool,
    decontaminate: bool | None,
) -> None:
    """Send every photo as one batch, follow its progress, then download the results into ``output``."""
    options = _server_options(background, fmt, quality, cutout, matte, decontaminate)
    jobs = list(collect_jobs(inputs))
    if not jobs:
        raise click.UsageError("no image files found in the given inputs")

    # A file the server would refuse outright (unreadable, not an image) would refuse the whole batch:
    # it is named here and left out.
    failures: dict[int, str] = {}
    sent: list[int] = []  # indexes into jobs, in the batch's submission order
    images: list[bytes] = []
    for index, job in enumerate(jobs):
        try:
            data = job.source.read_bytes()
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
            written = _run_batch(client, jobs, sent, images, options, output, failures)
        except ApiError as exc:
            raise click.ClickException(f"the server answered {exc.status} {exc.code}: {exc.message}") from exc
        except urllib.error.URLError as exc:
            raise click.ClickException(f"cannot reach {server}: {exc.reason}") from exc
        except TimeoutError as exc:
            raise click.ClickException(str(exc)) from exc

    report(written, len(jobs), output, [(jobs[index].source, failures[index]) for index in sorted(failures)])


def _run_batch(
    client: BackdropClient,
    jobs: list[Job],
    sent: list[int],
    images: list[bytes],
    options: Options,
    output: Path,
    failures: dict[int, str],
) -> int:
    """Submit, wait with a progress bar, download; returns how many photos were written."""
    batch = client.submit_batch(images, filenames=[jobs[index].source.name for index in sent], **options)
    batch_id = batch["id"]
    with tqdm(total=len(sent), desc="replacing", unit="photo", disable=None) as bar:

        def progress(state: dict) -> None:
            bar.update(max(0, _finished(state) - bar.n))

        try:
            client.wait_batch(batch_id, timeout=BATCH_TIMEOUT_SECONDS, on_progress=progress)
        except KeyboardInterrupt:
            with suppress(ApiError, OSError):
                client.cancel_batch(batch_id)
            raise

    remote_jobs = list(client.iter_batch_jobs(batch_id))
    if len(remote_jobs) != len(sent):
        raise click.ClickException(f"batch {batch_id} has {len(remote_jobs)} jobs, {len(sent)} photos were sent")
    written = 0
    for index, remote in zip(sent, remote_jobs, strict=True):
        job = jobs[index]
        status = remote.get("status")
        if status != "succeeded":
            error = remote.get("error") or {"code": status or "unknown", "message": f"the job is {status}"}
            failures[index] = f"{error.get('code')}: {error.get('message')}"
            continue
        try:
            for kind, result in (remote.get("results") or {}).items():
                target = output_path(output, job, kind, str(result.get("format", "jpeg")))
                data = client.download(result["url"])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        except (ApiError, urllib.error.URLError) as exc:
            failures[index] = f"{_describe(exc)} (downloading its {kind})"
            continue
        except OSError as exc:
            failures[index] = f"unwritable: {exc.strerror or exc} (its {kind})"
            continue
        written += 1
    return written
