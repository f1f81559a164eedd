"""``backdrop replace``: new backgrounds for photos and folders of photos, in this process or on a server."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
from tqdm import tqdm

from common.backgrounds import PRESETS
from common.errors import BackdropError, InvalidOption, ModelError
from common.pipeline import OutputKind, ReplaceOptions, file_extension
from common.settings import Settings, get_settings

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
OUTPUT_SUFFIXES = {OutputKind.CUTOUT: ".cutout.png", OutputKind.MATTE: ".matte.png"}


@dataclass(frozen=True)
class Job:
    source: Path
    stem: Path  # output path without suffix, relative to the output folder


def collect_jobs(inputs: Iterable[Path]) -> Iterator[Job]:
    """Files as given (whatever their suffix), folders searched recursively for image files."""
    for item in inputs:
        if item.is_dir():
            for path in sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
                yield Job(path, path.relative_to(item).with_suffix(""))
        else:
            yield Job(item, Path(item.stem))


def output_path(output: Path, job: Job, kind: str, fmt: str) -> Path:
    """Where an output goes: <stem>.jpg|png|webp for the composite, <stem>.cutout.png, <stem>.matte.png."""
    suffix = OUTPUT_SUFFIXES.get(OutputKind(kind), f".{file_extension(fmt)}")
    return output / job.stem.with_name(job.stem.name + suffix)


def report(written: int, total: int, output: Path, failures: list[tuple[Path, str]]) -> None:
    """The summary of a run; exit status 1 when any photo failed, each named with its reason."""
    click.echo(f"{written} of {total} photos done, written to {output}", err=True)
    if failures:
        click.echo(f"{len(failures)} failed:", err=True)
        for path, reason in failures:
            click.echo(f"  {path}: {reason}", err=True)
        raise SystemExit(1)


def build_options(
    background: str, fmt: str | None, quality: int, cutout: bool, matte: bool, decontaminate: bool, settings: Settings
) -> ReplaceOptions:
    """Turn command-line values into options; a background that is a file is used as an image."""
    image = None
    if Path(background).is_file():
        from worker.replace import decode

        image = decode(Path(background), settings).rgb
        background = "image"
    outputs = ["composite"] + ["cutout"] * cutout + ["matte"] * matte
    return ReplaceOptions.from_values(
        background=background,
        format=fmt,
        quality=quality,
        outputs=outputs,
        decontaminate=decontaminate,
        background_image=image,
    )


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-b",
    "--background",
    default="blue",
    show_default=True,
    help=f"{', '.join(PRESETS)}, #RRGGBB, #RGB, transparent, blur, or the path of a background image.",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["jpeg", "jpg", "png", "webp"]),
    help="Default: jpeg (png if transparent).",
)
@click.option("-q", "--quality", default=92, show_default=True, type=click.IntRange(1, 100))
@click.option(
    "-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("out"), show_default=True
)
@click.option("--cutout", is_flag=True, help="Also write the person on transparency (<name>.cutout.png).")
@click.option("--matte", is_flag=True, help="Also write the alpha matte (<name>.matte.png).")
@click.option("--decontaminate/--no-decontaminate", default=None, help="Remove the old background's colour from edges.")
@click.option(
    "--server",
    metavar="URL",
    help="Send the photos as one batch to this Backdrop server instead of running the model here.",
)
@click.option("--api-key", envvar="BACKDROP_API_KEY", show_envvar=True, help="API key for --server.")
def replace(
    inputs: tuple[Path, ...],
    background: str,
    fmt: str | None,
    quality: int,
    output: Path,
    cutout: bool,
    matte: bool,
    decontaminate: bool | None,
    server: str | None,
    api_key: str | None,
) -> None:
    """Replace the background of INPUT photos (files or folders) and write the results to --output."""
    if server:
        from worker.cli.remote import replace_remote

        replace_remote(
            inputs,
            server=server,
            api_key=api_key,
            background=background,
            fmt=fmt,
            quality=quality,
            output=output,
            cutout=cutout,
            matte=matte,
            decontaminate=decontaminate,
        )
        return
    settings = get_settings()
    decontaminate = settings.decontaminate if decontaminate is None else decontaminate
    try:
        options = build_options(background, fmt, quality, cutout, matte, decontaminate, settings)
    except InvalidOption as exc:
        raise click.BadParameter(exc.message) from exc
    except BackdropError as exc:
        raise click.BadParameter(f"background image: {exc.message}") from exc

    jobs = list(collect_jobs(inputs))
    if not jobs:
        raise click.UsageError("no image files found in the given inputs")

    from worker.replace import replace_background
    from worker.runtime import ModelRunner

    try:
        runner = ModelRunner.from_settings(settings)
    except ModelError as exc:
        raise click.ClickException(exc.message) from exc

    failures: list[tuple[Path, str]] = []
    written = 0
    for job in tqdm(jobs, desc="replacing", unit="photo", disable=None):
        try:
            result = replace_background(job.source, options, runner, settings)
        except BackdropError as exc:
            failures.append((job.source, f"{exc.code}: {exc.message}"))
            continue
        except OSError as exc:
            failures.append((job.source, f"unreadable: {exc.strerror or exc}"))
            continue
        for kind, item in result.outputs.items.items():
            target = output_path(output, job, kind, item.format)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(item.data)
        written += 1

    report(written, len(jobs), output, failures)
