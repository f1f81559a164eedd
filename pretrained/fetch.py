"""Download and verify the official MODNet portrait-matting checkpoint.

The file is large and hosted by third parties, so it is not shipped with the code: this module tries a
list of mirrors in order and only accepts bytes with the exact published size and sha256. A download
goes to a temporary file beside the destination and is renamed into place only once verified, so the
destination never holds a partial or wrong file.

``backdrop weights fetch`` (or ``python -m pretrained.fetch``, the same command, for images that have
this package without the worker) places it where the settings expect; ``backdrop weights verify`` checks
it. The commands live here, beside what they run, so that ``pretrained`` needs nothing of ``worker``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import click
from tqdm import tqdm

from common.errors import WeightsDownloadError

WEIGHTS_FILENAME = "modnet_photographic_portrait_matting.ckpt"
EXPECTED_SIZE = 26_255_603
EXPECTED_SHA256 = "7c22235f0925deba15d4d63e53afcb654c47055bbcd98f56e393ab2584007ed8"

USER_AGENT = "backdrop-weights-fetch/1.0 (Python urllib)"
CHUNK_SIZE = 1 << 20
FETCH_COMMAND = "backdrop weights fetch"
MODULE_COMMAND = "python -m pretrained.fetch"
_HTML_PREFIXES = (b"<!doctype html", b"<html", b"<head", b"<!--")


@dataclass(frozen=True)
class Mirror:
    """One place the checkpoint can be downloaded from; ``name`` is what error messages show."""

    name: str
    url: str


MIRRORS: tuple[Mirror, ...] = (
    # Official Google Drive file, from the folder linked by the MODNet authors
    # (https://drive.google.com/drive/folders/1umYmlCulvIFNaqPjwod1SayFmSRHziyR).
    Mirror(
        "google-drive",
        "https://drive.usercontent.google.com/download?id=1mcr7ALciuAsHCpLnrtG_eop5-EYhbCmz&export=download&confirm=t",
    ),
    # OpenVINO open_model_zoo (models/public/modnet-photographic-portrait-matting/model.yml).
    Mirror(
        "openvino",
        "https://storage.openvinotoolkit.org/repositories/open_model_zoo/public/2022.2/"
        "modnet-photographic-portrait-matting/modnet_photographic_portrait_matting.ckpt",
    ),
    # Hugging Face copy of the official checkpoints.
    Mirror(
        "huggingface",
        "https://huggingface.co/DavG25/modnet-pretrained-models/resolve/main/models/"
        "modnet_photographic_portrait_matting.ckpt",
    ),
)


class _MirrorFailed(Exception):
    """One mirror did not deliver the file; the message is the short reason shown to the user."""


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks so large files need little memory."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def is_valid_weights(
    path: str | os.PathLike[str],
    *,
    expected_size: int = EXPECTED_SIZE,
    expected_sha256: str = EXPECTED_SHA256,
) -> bool:
    """Whether ``path`` is a regular file with the expected size and sha256 (size first: it is free)."""
    p = Path(path)
    try:
        if not p.is_file() or p.stat().st_size != expected_size:
            return False
        return sha256_of(p) == expected_sha256.lower()
    except OSError:
        return False


def missing_weights_message(path: str | os.PathLike[str]) -> str:
    """The one text every entry point shows for a missing checkpoint: where, how to relocate, how to fetch."""
    p = Path(path)
    shown = str(p) if p.is_absolute() else f"{p} (resolved: {p.resolve()})"
    return (
        f"MODNet weights not found at {shown}. "
        f"Download them with `{FETCH_COMMAND}` (or `{MODULE_COMMAND}`), "
        f"or set BACKDROP_MODEL_PATH to where {WEIGHTS_FILENAME} already is."
    )


def _looks_like_html(first_bytes: bytes) -> bool:
    """Whether a body starts like an HTML page (e.g. Google Drive's download-confirmation page)."""
    head = first_bytes[:512].lstrip().lower()
    return head.startswith(_HTML_PREFIXES)


def _download_one(
    mirror: Mirror,
    out: BinaryIO,
    *,
    expected_size: int,
    expected_sha256: str,
    timeout: float,
    progress: bool,
) -> None:
    """Stream one mirror into ``out`` and verify it; raise ``_MirrorFailed`` with a short reason otherwise."""
    request = urllib.request.Request(mirror.url, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _MirrorFailed(f"HTTP {exc.code} {exc.reason}".rstrip()) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _MirrorFailed(f"timed out after {timeout:g}s") from None
        raise _MirrorFailed(f"cannot connect: {exc.reason}") from None
    except TimeoutError:
        raise _MirrorFailed(f"timed out after {timeout:g}s") from None

    digest = hashlib.sha256()
    received = 0
    with (
        response,
        tqdm(
            total=expected_size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=mirror.name,
            file=sys.stderr,
            disable=not progress,
            leave=False,
        ) as bar,
    ):
        content_type = (response.headers.get("Content-Type") or "").lower()
        if content_type.startswith(("text/html", "application/xhtml")):
            raise _MirrorFailed(f"got an HTML page instead of the file (Content-Type {content_type})")
        length = response.headers.get("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) != expected_size:
            raise _MirrorFailed(f"Content-Length {int(length)} != {expected_size}")
        while True:
            chunk = response.read(CHUNK_SIZE)
            if not chunk:
                break
            if received == 0 and _looks_like_html(chunk):
                raise _MirrorFailed("got an HTML page instead of the file")
            received += len(chunk)
            if received > expected_size:
                raise _MirrorFailed(f"server sent more than {expected_size} bytes")
            digest.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))
    if received != expected_size:
        raise _MirrorFailed(f"size {received} != {expected_size}")
    actual = digest.hexdigest()
    if actual != expected_sha256.lower():
        raise _MirrorFailed(f"sha256 mismatch (got {actual})")


def _manual_instructions(dest: Path, expected_size: int, expected_sha256: str) -> str:
    """How to put the file in place without this module."""
    return (
        f"Download {WEIGHTS_FILENAME} by hand (from the MODNet project, github.com/ZHKKKe/MODNet) "
        f"and save it as {dest}; it must be exactly {expected_size} bytes with sha256 {expected_sha256} "
        f"(check with `sha256sum {dest}`)."
    )


def fetch_weights(
    dest: str | os.PathLike[str],
    *,
    mirrors: Sequence[Mirror] = MIRRORS,
    expected_size: int = EXPECTED_SIZE,
    expected_sha256: str = EXPECTED_SHA256,
    progress: bool = True,
    timeout: float = 60.0,
    force: bool = False,
) -> Path:
    """Make sure ``dest`` holds the verified checkpoint, downloading it from the first mirror that works.

    A valid existing file is kept as is unless ``force``. Raises ``WeightsDownloadError`` listing each
    mirror's failure when none delivers the expected bytes; ``dest`` is then left as it was.
    """
    dest = Path(dest)
    if not force and is_valid_weights(dest, expected_size=expected_size, expected_sha256=expected_sha256):
        return dest

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsDownloadError(
            f"Cannot create the directory {dest.parent} for the MODNet weights: {exc}. "
            + _manual_instructions(dest, expected_size, expected_sha256)
        ) from exc

    failures: list[str] = []
    for mirror in mirrors:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                _download_one(
                    mirror,
                    out,
                    expected_size=expected_size,
                    expected_sha256=expected_sha256,
                    timeout=timeout,
                    progress=progress,
                )
            os.replace(tmp, dest)
            return dest
        except _MirrorFailed as exc:
            failures.append(f"{mirror.name}: {exc}")
        except TimeoutError:
            failures.append(f"{mirror.name}: timed out after {timeout:g}s")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            failures.append(f"{mirror.name}: {type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    tried = "\n".join(f"  - {line}" for line in failures) or "  (no mirrors configured)"
    raise WeightsDownloadError(
        f"Could not download the MODNet weights to {dest}; every mirror failed:\n{tried}\n"
        + _manual_instructions(dest, expected_size, expected_sha256)
    )


def _destination(dest: Path | None) -> Path:
    if dest is not None:
        return dest
    from common.settings import get_settings

    return get_settings().model_path


dest_option = click.option(
    "--dest",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The checkpoint file (default: the BACKDROP_MODEL_PATH setting).",
)


@click.group(name="weights")
def weights() -> None:
    """Download or check the model weights (BACKDROP_MODEL_PATH)."""


@weights.command(name="fetch", context_settings={"help_option_names": ["-h", "--help"]})
@dest_option
@click.option("--force", is_flag=True, help="Download again even if a valid file is there.")
@click.option("--no-progress", is_flag=True, help="Do not show a progress bar.")
def fetch_command(dest: Path | None, force: bool, no_progress: bool) -> None:
    """Download the official checkpoint from its mirrors and verify its size and sha256."""
    # Module globals are read here (not bound as defaults) so the values in use are the current ones.
    try:
        path = fetch_weights(
            _destination(dest),
            mirrors=MIRRORS,
            expected_size=EXPECTED_SIZE,
            expected_sha256=EXPECTED_SHA256,
            progress=not no_progress,
            force=force,
        )
    except WeightsDownloadError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"MODNet weights ready: {path} ({EXPECTED_SIZE} bytes, sha256 {EXPECTED_SHA256})")


@weights.command(name="verify")
@dest_option
@click.option("--path", "former_path", type=click.Path(path_type=Path), hidden=True, help="Former name of --dest.")
def verify_command(dest: Path | None, former_path: Path | None) -> None:
    """Check that the file is the official checkpoint (size and sha256)."""
    target = _destination(dest or former_path)
    if not is_valid_weights(target, expected_size=EXPECTED_SIZE, expected_sha256=EXPECTED_SHA256):
        raise click.ClickException(
            f"{target} is missing or is not the official checkpoint ({EXPECTED_SIZE} bytes, sha256 {EXPECTED_SHA256})"
        )
    click.echo(f"{target}: OK")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pretrained.fetch``: the same command as ``backdrop weights fetch``; its exit status."""
    try:
        status = fetch_command.main(args=argv, prog_name=MODULE_COMMAND, standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
