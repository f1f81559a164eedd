"""Rate limits (Flask-Limiter on Redis), with ``RateLimit-*`` and ``Retry-After`` headers, and the caps on
requests held by ``Prefer: wait``.

Budgets: one per API key for every action (submissions, cancels, deletes and any other call), one per
key for polls (GET of a job or a batch), one per client address for ``/v1/files`` downloads and one per
client address for failed authentications."""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from flask import Flask, Response, current_app, g, request
from flask_limiter import HeaderNames, Limit, Limiter
from flask_limiter.util import get_remote_address
from limits import parse
from werkzeug.exceptions import TooManyRequests

from api.context import ApiContext
from common import keyspace
from common.keyspace import RATE_LIMIT_PREFIX
from common.settings import Settings

log = logging.getLogger(__name__)

# Polls of a job or a batch, on their own budget: clients follow Retry-After on these.
POLL_ENDPOINTS = frozenset({"jobs.get_job", "batches.get_batch"})
FILE_ENDPOINTS = frozenset({"files.download", "uploads.receive_upload"})  # signed links, per address
# The poll budget while BACKDROP_RATE_LIMIT is at its default: 100 polls a second per key.
GENEROUS_POLL_LIMIT = "6000/minute"
WAITS_EXTENSION = "backdrop.waits"


def _rate_key() -> str:
    owner = g.get("owner")
    return f"key:{owner}" if owner else f"ip:{get_remote_address()}"


def _address_key() -> str:
    return f"ip:{get_remote_address()}"


def _settings() -> Settings:
    return current_app.extensions["backdrop"].settings


def poll_limit(settings: Settings) -> str:
    """The poll budget: BACKDROP_POLL_RATE_LIMIT; unset, a generous one while BACKDROP_RATE_LIMIT is at its
    default, else the same amount as BACKDROP_RATE_LIMIT (a budget of its own all the same)."""
    if settings.poll_rate_limit:
        return settings.poll_rate_limit
    if settings.rate_limit == Settings.model_fields["rate_limit"].default:
        return GENEROUS_POLL_LIMIT
    return settings.rate_limit


def _is_poll() -> bool:
    return request.method in ("GET", "HEAD") and request.endpoint in POLL_ENDPOINTS


def _unmetered() -> bool:
    # Health checks, the demo page, preflights and signed downloads carry no key.
    return g.get("owner") is None


limiter = Limiter(
    key_func=_rate_key,
    default_limits=[
        Limit(
            lambda: _settings().rate_limit,
            scope="actions",
            shared=True,
            exempt_when=lambda: _unmetered() or _is_poll(),
        ),
        Limit(
            lambda: poll_limit(_settings()),
            scope="polls",
            shared=True,
            exempt_when=lambda: _unmetered() or not _is_poll(),
        ),
        Limit(
            lambda: _settings().file_rate_limit,
            key_function=_address_key,
            scope="files",
            shared=True,
            exempt_when=lambda: request.endpoint not in FILE_ENDPOINTS,
        ),
    ],
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


def count_failed_authentication(settings: Settings) -> None:
    """Count a failed authentication against the caller's address; beyond the budget, a 429
    (``rate_limited``, with Retry-After) instead of the 401. Valid keys from that address still pass."""
    if not (limiter.enabled and limiter.initialized):
        return
    item = parse(settings.auth_failure_rate_limit)
    identifiers = (RATE_LIMIT_PREFIX, _address_key(), "auth-failures")
    try:
        if limiter.limiter.hit(item, *identifiers):
            return
        reset = limiter.limiter.get_window_stats(item, *identifiers).reset_time
    except Exception:  # the limiter's storage is down: the 401 stands, as with the other limits
        log.exception("failed to count a failed authentication")
        return
    raise TooManyRequests(
        f"too many failed authentications from this address (limit {settings.auth_failure_rate_limit})",
        retry_after=max(1, math.ceil(reset - time.time())),
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


def init_waits(app: Flask, settings: Settings) -> None:
    """The process's slots for requests held by ``Prefer: wait`` (BACKDROP_MAX_WAITING_REQUESTS)."""
    app.extensions[WAITS_EXTENSION] = threading.BoundedSemaphore(settings.max_waiting_requests)


# Takes a slot of an owner's waits when fewer than the cap are held: drops the expired ones, then adds.
_TAKE_KEY_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""
# A slot outlives its wait by this much at most, should the process holding it die.
WAIT_SLOT_SLACK_SECONDS = 30


@contextmanager
def wait_slot(api: ApiContext, owner: str, seconds: int) -> Iterator[bool]:
    """Whether this request may be held ``seconds`` for ``Prefer: wait``: a slot of the process
    (BACKDROP_MAX_WAITING_REQUESTS) and one of the key's (BACKDROP_MAX_WAITING_PER_KEY, in Redis,
    shared by every process), both given back on leaving. False: answer at once."""
    slots: threading.BoundedSemaphore = current_app.extensions[WAITS_EXTENSION]
    if not slots.acquire(blocking=False):
        yield False
        return
    try:
        key = keyspace.WAITING.format(owner=owner)
        member = uuid.uuid4().hex
        now = time.time()
        try:
            taken = api.redis.eval(
                _TAKE_KEY_SLOT,
                1,
                key,
                now,
                now + seconds + WAIT_SLOT_SLACK_SECONDS,
                member,
                api.settings.max_waiting_per_key,
                api.settings.max_wait_seconds + WAIT_SLOT_SLACK_SECONDS,
            )
        except redis.RedisError as exc:
            log.warning("no wait: the waits of %s could not be counted: %s", owner, exc)
            taken = 0
        if not taken:
            yield False
            return
        try:
            yield True
        finally:
            try:
                api.redis.zrem(key, member)
            except redis.RedisError as exc:  # it expires with its deadline
                log.warning("a wait slot of %s was left to expire: %s", owner, exc)
    finally:
        slots.release()
