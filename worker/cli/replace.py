"""``backdrop replace``: new backgrounds for photos and folders of photos, in this process or on a server.

The flags of the job's options are generated from ``JobOptions`` (see ``option_flags``); ``--cutout``
and ``--matte`` are shorthands that add to ``--outputs``, and ``--background`` also takes the path of
an image file, used as the background image.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from common.backgrounds import BackgroundKind, BackgroundSpec, parse_background
from common.errors import BackdropError, InvalidOption, ModelError
from common.options import JobOptions, OutputKind
from common.pipeline import decode, replace_photo
from common.settings import Settings, get_settings
from worker.cli.option_flags import given, job_option_flags, with_settings
from worker.cli.photo_files import collect, report, write_output
from worker.cli.remote import replace_remote

NOTES = {"background": "or the path of an image file (used as the background image)"}


def chosen_options(values: Mapping[str, Any], *, cutout: bool, matte: bool) -> dict[str, Any]:
    """The options given on the command line, with ``--cutout`` and ``--matte`` added to the outputs."""
    chosen = given(values)
    extra = [OutputKind.CUTOUT.value] * cutout + [OutputKind.MATTE.value] * matte
    if extra:
        chosen["outputs"] = [*chosen.get("outputs", [OutputKind.COMPOSITE.value]), *extra]
    return chosen


def local_options(values: Mapping[str, Any], settings: Settings) -> tuple[JobOptions, BackgroundSpec]:
    """The options of a run in this process (unset ones from ``settings``) and the background to render;
    a background that is a file is decoded and used as the image."""
    values = with_settings(values, settings)
    background = values.get("background")
    if background is not None and Path(background).is_file():
        try:
            image = decode(Path(background), settings).rgb
        except BackdropError as exc:
            raise click.BadParameter(f"background image: {exc.message}") from exc
        options = _job_options({**values, "background": BackgroundKind.IMAGE.value})
        return options, parse_background(BackgroundKind.IMAGE.value, image=image)
    options = _job_options(values)
    try:
        return options, options.background_spec()
    except InvalidOption as exc:
        raise click.BadParameter(exc.message) from exc


def _job_options(values: Mapping[str, Any]) -> JobOptions:
    try:
        return JobOptions(**values)
    except InvalidOption as exc:
        raise click.BadParameter(exc.message) from exc


def check_inputs_exist(inputs: tuple[Path, ...]) -> None:
    """When no INPUT is a file or a folder, a usage error naming them all, before any model or server is
    used; a missing one among others is reported with the run's other failures."""
    missing = [str(path) for path in inputs if not path.exists()]
    if missing and len(missing) == len(inputs):
        raise click.BadParameter("no such file or folder: " + ", ".join(missing), param_hint="'INPUT...'")


def replace_local(inputs: tuple[Path, ...], values: Mapping[str, Any], output: Path) -> None:
    """Load MODNet here and run every photo through the pipeline, one at a time."""
    settings = get_settings()
    options, background = local_options(values, settings)
    check_inputs_exist(inputs)
    photos = list(collect(inputs))
    if not photos:
        raise click.UsageError("no image files found in the given inputs")

    from worker.runtime import ModelRunner  # torch: only this mode loads it

    try:
        runner = ModelRunner.from_settings(settings)
    except ModelError as exc:
        raise click.ClickException(exc.message) from exc

    failures: list[tuple[Path, str]] = []
    written = 0
    for photo in tqdm(photos, desc="replacing", unit="photo", disable=None):
        try:
            result = replace_photo(photo.source, options, runner.predict, settings, background)
        except BackdropError as exc:
            failures.append((photo.source, f"{exc.code}: {exc.message}"))
            continue
        except OSError as exc:
            failures.append((photo.source, f"unreadable: {exc.strerror or exc}"))
            continue
        for item in result.outputs.items.values():
            write_output(output, photo, item.kind, item.format, item.data)
        written += 1

    report(written, len(photos), output, failures)


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@job_option_flags(notes=NOTES)
@click.option(
    "-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("out"), show_default=True
)
@click.option("--cutout", is_flag=True, help="Also write the person on transparency (<name>.cutout.png).")
@click.option("--matte", is_flag=True, help="Also write the alpha matte (<name>.matte.png).")
@click.option(
    "--server",
    metavar="URL",
    help="Send the photos as one batch to this Backdrop server instead of running the model here.",
)
@click.option("--api-key", envvar="BACKDROP_API_KEY", show_envvar=True, help="API key for --server.")
@click.option(
    "--keep-on-server",
    is_flag=True,
    help="With --server: leave the batch, its photos and results there (deleted once downloaded otherwise).",
)
def replace(
    inputs: tuple[Path, ...],
    output: Path,
    cutout: bool,
    matte: bool,
    server: str | None,
    api_key: str | None,
    keep_on_server: bool,
    **values: Any,
) -> None:
    """Replace the background of INPUT photos (files or folders) and write the results to --output."""
    chosen = chosen_options(values, cutout=cutout, matte=matte)
    if server:
        check_inputs_exist(inputs)
        replace_remote(inputs, server=server, api_key=api_key, values=chosen, output=output, keep=keep_on_server)
    else:
        replace_local(inputs, chosen, output)
