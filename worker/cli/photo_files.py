"""The files of ``backdrop replace``: which photos to process, where their outputs go, and the summary.

Shared by the local and the ``--server`` mode, so that both find the same photos, write the same
file names and report the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from common.options import OutputKind, file_extension

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
OUTPUT_SUFFIXES = {OutputKind.CUTOUT: ".cutout.png", OutputKind.MATTE: ".matte.png"}


@dataclass(frozen=True)
class PhotoFile:
    """One photo to process: the file read, and where its outputs go."""

    source: Path
    stem: Path  # output path without suffix, relative to the output folder


def collect(inputs: Iterable[Path]) -> Iterator[PhotoFile]:
    """Files as given (whatever their suffix), folders searched recursively for image files."""
    for item in inputs:
        if item.is_dir():
            for path in sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
                yield PhotoFile(path, path.relative_to(item).with_suffix(""))
        else:
            yield PhotoFile(item, Path(item.stem))


def output_path(output: Path, photo: PhotoFile, kind: str, fmt: str) -> Path:
    """Where an output goes: <stem>.jpg|png|webp for the composite, <stem>.cutout.png, <stem>.matte.png."""
    suffix = OUTPUT_SUFFIXES.get(OutputKind(kind), f".{file_extension(fmt)}")
    return output / photo.stem.with_name(photo.stem.name + suffix)


def write_output(output: Path, photo: PhotoFile, kind: str, fmt: str, data: bytes) -> None:
    """Write one output of ``photo`` under ``output``, creating its folder."""
    target = output_path(output, photo, kind, fmt)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def report(written: int, total: int, output: Path, failures: list[tuple[Path, str]]) -> None:
    """The summary of a run; exit status 1 when any photo failed, each named with its reason."""
    click.echo(f"{written} of {total} photos done, written to {output}", err=True)
    if failures:
        click.echo(f"{len(failures)} failed:", err=True)
        for path, reason in failures:
            click.echo(f"  {path}: {reason}", err=True)
        raise SystemExit(1)
