"""Rate limits per API key (Flask-Limiter on Redis), with ``RateLimit-*`` and ``Retry-After`` headers."""

from __future__ import annotations

import time

from flask import Response, current_app, g
from flask_limiter import HeaderNames, Limiter
from flask_limiter.util import get_remote_address

from common.keyspace import RATE_LIMIT_PREFIX


def _rate_key() -> str:
    owner = g.get("owner")
    return f"key:{owner}" if owner else f"ip:{get_remote_address()}"


def _default_limit() -> str:
    return current_app.extensions["backdrop"].settings.rate_limit


def _exempt() -> bool:
    # Health checks, the demo page and signed downloads are not metered.
    return g.get("owner") is None


limiter = Limiter(
    key_func=_rate_key,
    default_limits=[_default_limit],
    default_limits_exempt_when=_exempt,
    headers_enabled=True,
    header_name_mapping={
        HeaderNames.LIMIT: "RateLimit-Limit",
        HeaderNames.REMAINING: "RateLimit-Remaining",
        HeaderNames.RESET: "RateLimit-Reset",
        HeaderNames.RETRY_AFTER: "Retry-After",
    },
    strategy="moving-window",
    key_prefix=RATE_LIMIT_PREFIX,
)


def keep_own_retry_after(response: Response) -> Response:
    """Flask-Limiter writes Retry-After on every response; keep it only where it means something:
    our own value (a pending job's poll interval, a quota refusal) or a rate-limit refusal. Its
    RateLimit-Reset is a unix time; the RateLimit header fields draft wants seconds from now."""
    reset = response.headers.get("RateLimit-Reset")
    if reset is not None and reset.isdigit() and int(reset) > 10**9:
        response.headers["RateLimit-Reset"] = str(max(0, int(reset) - int(time.time())))
    own = g.get("retry_after")
    if own is not None:
        response.headers["Retry-After"] = own
    elif response.status_code != 429:
        response.headers.pop("Retry-After", None)
    return response
