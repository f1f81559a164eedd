"""The Redis transport of Backdrop's Celery apps: kombu's, with two changes.

- A queue item that is not a message (not JSON, or not kombu's envelope) is logged and dropped instead
  of stopping the worker. Only our API writes to the queues, so such an item means a bug or a hand-made
  write; one bad item must not take down every worker that reads the queue.
- A channel keeps one synchronous Redis client over its connection pool, where kombu builds a new one
  for every command it sends (a publish, an ack): building redis-py's client was a fifth of the time
  of publishing a message (``bench/RESULTS.md``, batch submission). The client holds no connection of
  its own, so sharing it is what the pool is for.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)

TRANSPORT = "common.broker:Transport"  # what Celery's broker_transport setting names


class Channel(kombu_redis.Channel):
    _sync_client: redis.Redis | None = None

    def _create_client(self, asynchronous: bool = False) -> redis.Redis:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:  # a new pool after a reconnection
            client = self._sync_client = super()._create_client()
        return client

    def _brpop_read(self, **options: Any) -> bool:
        try:
            return super()._brpop_read(**options)
        except (ValueError, KeyError, TypeError) as exc:  # an item that is not a message (it is popped)
            log.error("dropped a queue item that is not a message: %s: %s", type(exc).__name__, exc)
            return False


class Transport(kombu_redis.Transport):
    Channel = Channel
