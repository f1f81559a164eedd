"""A worker's heartbeat: it says it is alive every ``HEARTBEAT_SECONDS`` (``common.workers``), so that
readiness lists it while it runs and stops listing it soon after it is killed, and keeps its Redis
record from expiring while it runs."""

from __future__ import annotations

import logging
import threading

import redis

from common import keyspace
from common.workers import HEARTBEAT_SECONDS, forget, mark_alive

log = logging.getLogger(__name__)


class PresenceLoop:
    """A daemon thread marking the worker ``name`` alive, first at ``start`` and then every beat."""

    def __init__(self, client: redis.Redis, name: str, record_ttl_seconds: int) -> None:
        self.client = client
        self.name = name
        self.record_ttl_seconds = record_ttl_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="presence", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        try:
            mark_alive(self.client, self.name)
            self.client.expire(keyspace.WORKER.format(name=self.name), self.record_ttl_seconds)
        except redis.RedisError as exc:
            log.warning("could not record that this worker is alive (%s); will try again", exc)

    def stop(self) -> None:
        """Stop beating and take the worker off the list of live workers."""
        self._stop.set()
        try:
            forget(self.client, self.name)
        except redis.RedisError:
            log.warning("could not take this worker off the list of live workers", exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self.beat()
