"""What the API process holds for its lifetime, built once by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app

from common.api_keys import ApiKeyStore
from common.batches import BatchStore
from common.jobs import JobStore
from common.keyspace import redis_from_settings
from common.queue import make_celery
from common.settings import Settings
from common.storage import Storage, guarded_storage_from_settings

EXTENSION = "backdrop"


@dataclass
class ApiContext:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    batches: BatchStore
    api_keys: ApiKeyStore
    storage: Storage
    celery: Celery

    @classmethod
    def build(cls, settings: Settings) -> ApiContext:
        client = redis_from_settings(settings)
        jobs = JobStore(client, settings.job_ttl_seconds)
        return cls(
            settings=settings,
            redis=client,
            jobs=jobs,
            batches=BatchStore(client, jobs),
            api_keys=ApiKeyStore(client),
            storage=guarded_storage_from_settings(settings),
            celery=make_celery(settings),
        )


def ctx() -> ApiContext:
    return current_app.extensions[EXTENSION]
