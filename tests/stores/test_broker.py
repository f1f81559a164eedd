"""Our kombu transport over a real Redis: a channel builds one synchronous client for every command it
sends, and a new one only on a new connection pool (after a disconnection)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import ClassVar

import pytest
import redis

from common import broker
from common.queue import BATCH_QUEUE, jobs_in_broker, make_celery, send_job
from common.settings import Settings


class _PublishingClient(redis.Redis):
    """kombu's Redis client, noting which client object each message is pushed through."""

    built: ClassVar[Iterator[int]] = itertools.count()
    pushers: ClassVar[list[int]] = []  # the serial number of the client each message went through

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.serial = next(self.built)

    def lpush(self, name: str, *values: object) -> object:
        type(self).pushers.append(self.serial)
        return super().lpush(name, *values)  # type: ignore[arg-type]


def test_a_channel_publishes_through_one_client_until_its_pool_changes(
    redis_url: str, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker.Channel, "_get_client", lambda self: _PublishingClient)
    _PublishingClient.pushers = []
    app = make_celery(Settings(redis_url=redis_url))
    try:
        sent = [f"{index:032x}" for index in range(50)]
        for job_id in sent[:25]:
            send_job(app, job_id, BATCH_QUEUE)
        assert len(set(_PublishingClient.pushers)) == 1  # kombu's own channel builds one per message
        with app.pool.acquire(block=True) as connection:
            connection.default_channel._disconnect_pools()  # as kombu does when the connection is lost
        for job_id in sent[25:]:
            send_job(app, job_id, BATCH_QUEUE)
        # The old client's pool is gone: the messages after it go through one new client, on the new pool.
        assert len(_PublishingClient.pushers) == 50 and len(set(_PublishingClient.pushers[25:])) == 1
        assert _PublishingClient.pushers[25] != _PublishingClient.pushers[0]
        assert jobs_in_broker(client) == set(sent)
    finally:
        app.close()
