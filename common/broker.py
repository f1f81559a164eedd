"""The Redis transport of Backdrop's Celery apps: kombu's, except that a queue item that is not a
message (not JSON, or not kombu's envelope) is logged and dropped instead of stopping the worker.

Only our API writes to the queues, so such an item means a bug or a hand-made write; one bad item
must not take down every worker that reads the queue.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)

TRANSPORT = "common.broker:Transport"  # what Celery's broker_transport setting names


class Channel(kombu_redis.Channel):
    def _brpop_read(self, **options: Any) -> bool:
        try:
            return super()._brpop_read(**options)
        except (ValueError, KeyError, TypeError) as exc:  # an item that is not a message (it is popped)
            log.error("dropped a queue item that is not a message: %s: %s", type(exc).__name__, exc)
            return False


class Transport(kombu_redis.Transport):
    Channel = Channel
