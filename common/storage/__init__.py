"""Object storage for uploads and results: one interface, an S3-compatible and a local-disk backend.

Workers and the API only see ``Storage``; which backend runs is a setting. Object keys are built in
``layout``, the interface lives in ``base``, each backend in its own module.
"""

from __future__ import annotations

from common.storage.base import (
    DEFAULT_CONTENT_TYPE,
    MAX_URL_EXPIRY_SECONDS,
    FileServer,
    Storage,
    attachment_disposition,
)
from common.storage.factory import guarded_storage_from_settings, storage_from_settings
from common.storage.layout import (
    JOB_OBJECT_PREFIXES,
    RETAINED_PREFIXES,
    background_key,
    input_key,
    is_owned_by,
    job_prefix,
    result_key,
    upload_key,
    upload_prefix,
    validate_key,
)
from common.storage.local import SIGNING_KEY_FILE, LocalStorage, local_secret
from common.storage.s3 import S3Storage

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "JOB_OBJECT_PREFIXES",
    "MAX_URL_EXPIRY_SECONDS",
    "RETAINED_PREFIXES",
    "SIGNING_KEY_FILE",
    "FileServer",
    "LocalStorage",
    "S3Storage",
    "Storage",
    "attachment_disposition",
    "background_key",
    "guarded_storage_from_settings",
    "input_key",
    "is_owned_by",
    "job_prefix",
    "local_secret",
    "result_key",
    "storage_from_settings",
    "upload_key",
    "upload_prefix",
    "validate_key",
]
