"""Object keys: where each of a job's objects lives, and which keys any backend accepts.

Keys are built here, in one place, and are deterministic per job so a retried job overwrites its
objects instead of duplicating them.
"""

from __future__ import annotations

# Every object Backdrop writes lives under one of these.
JOB_OBJECT_PREFIXES = ("inputs/", "backgrounds/", "results/")
# What clients upload through presigned URLs (``POST /v1/uploads``): one prefix per API key.
UPLOADS_PREFIX = "uploads/"
# Retention sweeps these: the job objects and the clients' uploads.
RETAINED_PREFIXES = (*JOB_OBJECT_PREFIXES, UPLOADS_PREFIX)


def _check_segment(value: str, what: str) -> None:
    """One path segment of a key: non-empty, no separators, no control characters, not '.' or '..'."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if "/" in value or "\\" in value or value in (".", "..") or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"invalid {what}: {value!r}")


def validate_key(key: str, *, prefix: bool = False) -> None:
    """Refuse keys that could escape a directory or mean different things to different backends.

    A key is '/'-separated segments, none empty, '.' or '..', with no backslash or control character
    and no leading '/'. A prefix may also end with '/'.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("a storage key must be a non-empty string")
    segments = key.split("/")
    if prefix and len(segments) > 1 and segments[-1] == "":
        segments = segments[:-1]
    for segment in segments:
        _check_segment(segment, "storage key segment" if segment else f"storage key {key!r} (empty segment)")


def input_key(job_id: str) -> str:
    """Where a job's uploaded image lives."""
    _check_segment(job_id, "job id")
    return f"inputs/{job_id}"


def background_key(job_id: str) -> str:
    """Where a job's uploaded background image lives (when the client sent one)."""
    _check_segment(job_id, "job id")
    return f"backgrounds/{job_id}"


def result_key(job_id: str, name: str) -> str:
    """Where one of a job's outputs lives, e.g. ``result_key(job_id, "composite.jpg")``."""
    _check_segment(job_id, "job id")
    _check_segment(name, "result name")
    return f"results/{job_id}/{name}"


def upload_prefix(owner: str) -> str:
    """The prefix an API key (or the anonymous user) owns: the only objects its batches may name."""
    _check_segment(owner, "owner")
    return f"{UPLOADS_PREFIX}{owner}/"


def upload_key(owner: str, name: str) -> str:
    """Where a client's upload named ``name`` lives, under its owner's prefix."""
    _check_segment(name, "upload name")
    return upload_prefix(owner) + name


def is_owned_by(key: str, owner: str) -> bool:
    """Whether ``key`` is a valid object key under ``owner``'s upload prefix."""
    try:
        validate_key(key)
    except ValueError:
        return False
    return key.startswith(upload_prefix(owner)) and key != upload_prefix(owner)


def job_prefix(job_id: str) -> list[str]:
    """The prefixes holding all of a job's objects, for ``delete_prefix``.

    Prefixes match as plain string prefixes (as in S3), so job ids must not be prefixes of one
    another; fixed-length ids (UUIDs) guarantee that.
    """
    _check_segment(job_id, "job id")
    return [input_key(job_id), background_key(job_id), f"results/{job_id}/"]
