"""Retention: delete uploads and results older than the job TTL (job records expire by themselves)."""

from __future__ import annotations

import logging
import threading
import time

from common.settings import Settings
from common.storage import RETAINED_PREFIXES, Storage

log = logging.getLogger(__name__)


def delete_expired(storage: Storage, settings: Settings) -> int:
    """Delete every job object and client upload older than the retention; returns how many were deleted."""
    cutoff = time.time() - settings.job_ttl_seconds
    return sum(storage.delete_prefix(prefix, older_than=cutoff) for prefix in RETAINED_PREFIXES)


class RetentionLoop:
    """A daemon thread running ``delete_expired`` every ``cleanup_interval_seconds`` until stopped."""

    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage = storage
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention-cleanup", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.cleanup_interval_seconds):
            try:
                removed = delete_expired(self.storage, self.settings)
                if removed:
                    log.info("retention: deleted %d expired objects", removed)
            except Exception:
                log.warning("retention cleanup failed; will try again", exc_info=True)
