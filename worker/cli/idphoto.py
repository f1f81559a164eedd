"""``backdrop idphoto``: portraits to compliant ID photos of one or more specs, with reports and sheets.

Writes ``<name>.<spec>.jpg`` (or .png), ``<name>.<spec>.report.json`` and, with ``--sheet``,
``<name>.<spec>.sheet.jpg`` under ``--output``, then a table of pass/fail per photo and spec. The
flags of the options are generated from ``JobOptions`` (its ID-photo surface).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from common.errors import BackdropError, InvalidOption, ModelError
from common.id_photo import IdPhotoResult
from common.id_specs import list_specs
from common.options import JobOptions, Surface
from common.pipeline import Predict, id_photos
from common.settings import Settings, get_settings
from worker.cli.option_flags import given, job_option_flags
from worker.cli.photo_files import PhotoFile, collect, report

NOTES = {"id_spec": "see --list-specs; several at once with commas (icao-35x45,us-visa)"}


def print_specs() -> None:
    """The catalogue as a table: id, pixel size, print size, names."""
    for spec in list_specs():
        printed = f"{spec.width_mm:g}x{spec.height_mm:g} mm" if spec.width_mm and spec.height_mm else "-"
        names = " / ".join(name for name in (spec.name_en, spec.name_zh) if name)
        click.echo(f"{spec.id:16} {spec.width_px:>4}x{spec.height_px:<5} {printed:14} {spec.dpi:>5g} dpi  {names}")


def id_files(output: Path, photo: PhotoFile, result: IdPhotoResult) -> list[tuple[Path, bytes]]:
    """Where each file of one spec's result goes, with its bytes."""
    stem = photo.stem.with_name(f"{photo.stem.name}.{result.spec.id}")
    extension = "png" if result.report.format == "png" else "jpg"
    files = [
        (output / stem.with_name(f"{stem.name}.{extension}"), result.photo),
        (output / stem.with_name(f"{stem.name}.report.json"), result.report.model_dump_json(indent=2).encode()),
    ]
    if result.sheet is not None:
        files.append((output / stem.with_name(f"{stem.name}.sheet.jpg"), result.sheet))
    return files


def _predictor(options: JobOptions, settings: Settings) -> Predict:
    """MODNet's predict, loaded here unless the photos' own alpha is the matte."""
    if options.matte_source == "alpha":

        def no_network(_: object) -> list:
            raise AssertionError("matte_source=alpha needs no forward pass")

        return no_network
    from worker.runtime import ModelRunner  # torch: only when the network makes the matte

    try:
        return ModelRunner.from_settings(settings).predict
    except ModelError as exc:
        raise click.ClickException(exc.message) from exc


def _options(values: Mapping[str, Any]) -> JobOptions:
    """The options given on the command line; those left at their default take the model's (for the
    background: each spec's own colour)."""
    ctx = click.get_current_context()
    chosen = {
        name: value
        for name, value in given(values).items()
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    }
    if not chosen.get("id_spec"):
        raise click.UsageError("name the spec(s) with --spec (see --list-specs)")
    try:
        return JobOptions(**chosen)
    except InvalidOption as exc:
        raise click.BadParameter(exc.message) from exc


@click.command()
@click.argument("photos", nargs=-1, type=click.Path(path_type=Path))
@job_option_flags(Surface.ID_CLI, notes=NOTES)
@click.option(
    "-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("out"), show_default=True
)
@click.option("--list-specs", "show_specs", is_flag=True, help="Print the catalogue of specs and exit.")
def idphoto(photos: tuple[Path, ...], output: Path, show_specs: bool, **values: Any) -> None:
    """Make compliant ID photos of PHOTOS (files or folders) for the given spec(s)."""
    if show_specs:
        print_specs()
        return
    if not photos:
        raise click.UsageError("give one or more photos (or --list-specs)")
    options = _options(values)
    found = list(collect(photos))
    missing = [photo.source for photo in found if not photo.source.is_file()]
    if missing:
        raise click.BadParameter(f"no such file: {missing[0]}", param_hint="PHOTOS")
    if not found:
        raise click.UsageError("no image files found in the given inputs")
    settings = get_settings()
    predict = _predictor(options, settings)
    from worker.faces import FaceDetector  # onnxruntime: only this command loads it

    detect = FaceDetector().detect
    failures: list[tuple[Path, str]] = []
    rows: list[tuple[str, str, str, str]] = []
    written = 0
    for photo in found:
        try:
            results = id_photos(photo.source, options, predict, detect, settings)
        except BackdropError as exc:
            failures.append((photo.source, f"{exc.code}: {exc.message}"))
            continue
        for result in results:
            for target, data in id_files(output, photo, result):
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            failed = ", ".join(check.rule for check in result.report.failures())
            rows.append((str(photo.source), result.spec.id, "pass" if result.report.passed else "FAIL", failed))
        written += 1
    width = max((len(row[0]) for row in rows), default=5)
    for source, spec_id, verdict, failed in rows:
        click.echo(f"{source:{width}}  {spec_id:16} {verdict:5} {failed}".rstrip())
    report(written, len(found), output, failures)
