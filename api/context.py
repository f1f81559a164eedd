"""What the API process holds for its lifetime, built once by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app

from common.jobs import JobStore
from common.keys import KeyStore
from common.queue import make_celery
from common.settings import Settings
from common.storage import Storage, storage_from_settings

EXTENSION = "backdrop"


@dataclass
class ApiContext:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    storage: Storage
    celery: Celery
    keys: KeyStore

    @classmethod
    def build(cls, settings: Settings) -> ApiContext:
        client = redis.Redis.from_url(
            settings.redis_url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5
        )
        return cls(
            settings=settings,
            redis=client,
            jobs=JobStore(client, settings.job_ttl_seconds),
            storage=storage_from_settings(settings),
            celery=make_celery(settings),
            keys=KeyStore(client),
        )


def ctx() -> ApiContext:
    return current_app.extensions[EXTENSION]
