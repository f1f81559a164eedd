"""The storage backend a process runs, chosen by its settings."""

from __future__ import annotations

from common.settings import Settings
from common.storage.base import Storage
from common.storage.breaker import GuardedStorage
from common.storage.local import LocalStorage, local_secret
from common.storage.s3 import S3Storage


def guarded_storage_from_settings(settings: Settings) -> Storage:
    """The storage behind a circuit breaker, for the API's requests."""
    return GuardedStorage(
        storage_from_settings(settings),
        failures=settings.storage_breaker_failures,
        reset_seconds=settings.storage_breaker_reset_seconds,
    )


def storage_from_settings(settings: Settings) -> Storage:
    """The storage backend the settings select."""
    if settings.storage == "s3":
        return S3Storage(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            create_bucket=settings.s3_create_bucket,
            connect_timeout=settings.storage_connect_timeout_seconds,
            read_timeout=settings.storage_read_timeout_seconds,
            max_attempts=settings.storage_max_attempts,
        )
    if settings.storage == "local":
        return LocalStorage(
            settings.data_dir / "storage",
            base_url=settings.public_base_url,
            secret=local_secret(settings.data_dir, settings.signing_secret),
            min_free_bytes=settings.local_storage_min_free_bytes,
        )
    raise ValueError(f"unknown storage backend {settings.storage!r}")
