"""Built engines kept on disk, keyed by the checkpoint's sha256 and the engine's version.

Only our own builds are stored here (converted from our torch MODNet in this process); a missing,
partial or unreadable entry is built again. Writes go to a temporary folder renamed into place, so
concurrent workers never read a half-written entry. Old entries beyond ``keep`` are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

COMPLETE = "complete"  # written last: an entry without it is ignored


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


class EngineCache:
    """Entries under ``root/<engine>/<version>-<sha256>/``; ``root`` None disables the cache."""

    def __init__(self, root: str | Path | None, keep: int = 4) -> None:
        self.root = Path(root).expanduser() if root else None
        self.keep = keep

    def entry(self, engine: str, version: str, checkpoint_sha256: str) -> Path | None:
        """The folder of a complete entry, or None."""
        if self.root is None:
            return None
        folder = self.root / _safe(engine) / f"{_safe(version)}-{checkpoint_sha256}"
        if (folder / COMPLETE).is_file():
            with contextlib.suppress(OSError):  # the age decides pruning; a read-only cache still serves
                os.utime(folder)
            return folder
        return None

    def store(self, engine: str, version: str, checkpoint_sha256: str, write: Callable[[Path], None]) -> Path | None:
        """Run ``write(folder)`` into a new entry and publish it; None when the cache is off or unwritable."""
        if self.root is None:
            return None
        parent = self.root / _safe(engine)
        final = parent / f"{_safe(version)}-{checkpoint_sha256}"
        try:
            parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=".building-", dir=parent))
            try:
                write(scratch)
                (scratch / COMPLETE).write_text(checkpoint_sha256 + "\n")
                if (final / COMPLETE).is_file():  # another worker published it meanwhile
                    shutil.rmtree(scratch, ignore_errors=True)
                else:
                    shutil.rmtree(final, ignore_errors=True)
                    scratch.rename(final)
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
        except OSError:
            log.warning("could not write the %s engine cache under %s; going on without it", engine, parent)
            return None
        self._prune(parent)
        return final

    def discard(self, folder: Path) -> None:
        """Remove an entry that turned out unusable."""
        shutil.rmtree(folder, ignore_errors=True)

    def _prune(self, parent: Path) -> None:
        entries = [p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")]
        entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in entries[self.keep :]:
            shutil.rmtree(stale, ignore_errors=True)
