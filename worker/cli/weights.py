"""``backdrop weights``: fetch and verify the MODNet checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from common.errors import WeightsDownloadError
from common.settings import get_settings
from pretrained.fetch import EXPECTED_SHA256, EXPECTED_SIZE, fetch_weights, is_valid_weights


@click.group()
def weights() -> None:
    """Download or check the model weights (BACKDROP_MODEL_PATH)."""


def _destination(dest: Path | None) -> Path:
    return dest if dest is not None else get_settings().model_path


@weights.command()
@click.option("--dest", type=click.Path(path_type=Path), help="Where to save it (default: BACKDROP_MODEL_PATH).")
@click.option("--force", is_flag=True, help="Download again even if a valid file is there.")
def fetch(dest: Path | None, force: bool) -> None:
    """Download the official checkpoint from its mirrors and verify its size and sha256."""
    target = _destination(dest)
    try:
        path = fetch_weights(target, force=force)
    except WeightsDownloadError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"MODNet weights ready: {path}")


@weights.command()
@click.option("--path", "path", type=click.Path(path_type=Path), help="File to check (default: BACKDROP_MODEL_PATH).")
def verify(path: Path | None) -> None:
    """Check that the file is the official checkpoint (size and sha256)."""
    target = _destination(path)
    if not is_valid_weights(target):
        raise click.ClickException(
            f"{target} is missing or is not the official checkpoint ({EXPECTED_SIZE} bytes, sha256 {EXPECTED_SHA256})"
        )
    click.echo(f"{target}: OK")
