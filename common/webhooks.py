"""Webhook signing and delivery in the Standard Webhooks format (https://www.standardwebhooks.com).

Each delivery is a POST of compact JSON signed with the job's secret: the ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature`` headers let the receiver verify it with any Standard
Webhooks library and drop replays. Delivery goes through ``safe_request``, so a webhook URL can no more
reach Backdrop's own network than an image URL can, and redirects are never followed. Scheduling the
retries is the caller's job; this module says whether a failure is worth retrying and when.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from common.errors import FetchFailed, UnsafeURL
from common.netsafe import USER_AGENT, FetchLimits, Resolver, safe_request

WEBHOOK_EVENTS = ("job.started", "job.completed", "batch.completed")
"""job.completed covers succeeded, failed and canceled jobs: the payload's status says which."""

SECRET_PREFIX = "whsec_"
# A receiver's answer is not used; the cap keeps a misbehaving one from costing memory (a larger
# answer counts as a network failure).
MAX_RESPONSE_BYTES = 2**20
# Statuses of a receiver that is there but not ready: worth another try.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})
RETRY_BASE_SECONDS = 5
RETRY_FACTOR = 5
RETRY_CAP_SECONDS = 3600


def new_webhook_secret() -> str:
    """A fresh signing secret: "whsec_" and the base64 of 32 random bytes (the Standard Webhooks format)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def build_payload(event: str, data: dict[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    """The delivered JSON: {"type": event, "timestamp": ISO 8601 UTC, "data": data}."""
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown webhook event {event!r}; known: {', '.join(WEBHOOK_EVENTS)}")
    moment = _utc(now or datetime.now(UTC))
    return {"type": event, "timestamp": moment.isoformat().replace("+00:00", "Z"), "data": data}


def sign(secret: str, message_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
    """The headers of one delivery: webhook-id, webhook-timestamp, webhook-signature and Content-Type.

    The message id stays the same across retries of one delivery so that receivers can deduplicate.
    """
    moment = _utc(timestamp)
    signature = Webhook(secret).sign(message_id, moment, body.decode("utf-8"))
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(math.floor(moment.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


@dataclass
class DeliveryResult:
    """How one delivery attempt went: ``retryable`` says whether another attempt could succeed."""

    ok: bool
    status: int | None
    error: str | None
    retryable: bool


def _classify(status: int) -> DeliveryResult:
    if 200 <= status < 300:
        return DeliveryResult(ok=True, status=status, error=None, retryable=False)
    if 300 <= status < 400:
        return DeliveryResult(False, status, f"HTTP {status}: redirects are not followed", retryable=False)
    if 400 <= status < 500 and status not in RETRYABLE_CLIENT_STATUSES:
        return DeliveryResult(False, status, f"HTTP {status}", retryable=False)
    return DeliveryResult(False, status, f"HTTP {status}", retryable=True)


def deliver(
    url: str,
    secret: str,
    message_id: str,
    payload: dict[str, Any],
    *,
    allow_private: bool,
    timeout: float = 10,
    resolver: Resolver | None = None,
) -> DeliveryResult:
    """POST one signed delivery and say how it went; never raises for the receiver's faults.

    2xx is delivered. 3xx is a failure that retrying will not fix (redirects are not followed: a
    signed delivery goes where it was configured to go, or nowhere). 4xx is final except 408 and 429;
    5xx, 408, 429 and network failures are retryable. A URL refused as unsafe is final.
    """
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    headers = {**sign(secret, message_id, datetime.now(UTC), body), "User-Agent": USER_AGENT}
    limits = FetchLimits(max_bytes=MAX_RESPONSE_BYTES, timeout=timeout, max_redirects=0)
    try:
        response = safe_request(
            "POST",
            url,
            body=body,
            headers=headers,
            limits=limits,
            allow_private=allow_private,
            resolver=resolver,
            follow_redirects=False,
        )
    except UnsafeURL as exc:
        return DeliveryResult(ok=False, status=None, error=exc.message, retryable=False)
    except FetchFailed as exc:
        return DeliveryResult(ok=False, status=None, error=exc.message, retryable=True)
    return _classify(response.status)


def retry_delay(attempt: int) -> int:
    """Seconds to wait after failed attempt number ``attempt`` (1-based) before the next one.

    5 s, 25 s, 125 s (about 2 min), 625 s (about 10 min), 3125 s (about 52 min), then 1 h each time:
    with the default of 8 attempts, a receiver has about 3 hours to come back.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    exponent = min(attempt - 1, 10)  # keeps the power small; the cap applies long before
    return min(RETRY_BASE_SECONDS * RETRY_FACTOR**exponent, RETRY_CAP_SECONDS)
