"""Backdrop's Redis: every key template, and the one way to make a client.

Records (jobs, batches, API keys), the pending-jobs sets, idempotency reservations, worker
announcements and the rate limiter's counters all live under ``backdrop:``; Celery's queues use
their own names in the same database.
"""

from __future__ import annotations

import redis

from common.settings import Settings

PREFIX = "backdrop:"

JOB = PREFIX + "job:{job_id}"  # hash: one job record
PENDING = PREFIX + "pending:{owner}"  # set: an owner's queued and processing jobs (the quota)
PENDING_SINCE = PREFIX + "pending-since"  # sorted set: every queued or processing job, by its last sign of life
RECONCILER_LOCK = PREFIX + "reconciler:lock"  # string: held (with a TTL) by the worker running the reconciler
IDEMPOTENCY = PREFIX + "idempotency:{owner}:{key}"  # string: the job or batch an Idempotency-Key created
# lock: the request writing the batch of an Idempotency-Key (a namespace of its own: a client's key may end
# in anything, ":writer" included)
IDEMPOTENCY_WRITER = PREFIX + "idempotency-writer:{owner}:{key}"
BATCH = PREFIX + "batch:{batch_id}"  # hash: one batch record
BATCH_TALLY = "jobs_{status}"  # fields of BATCH: its jobs in each state, kept by the job scripts themselves
BATCH_JOBS = PREFIX + "batch:{batch_id}:jobs"  # list: the batch's job ids in submission order
BATCH_COMPLETED = PREFIX + "batch:{batch_id}:completed"  # string: set once, by whoever sees the last job finish
BATCHES_WRITING = PREFIX + "batches:writing"  # sorted set: batches being written, by their last progress (Unix time)
API_KEY = PREFIX + "apikey:{key_id}"  # hash: one API key (its secret only hashed)
API_KEY_INDEX = PREFIX + "apikeys"  # set: every key id
WORKER = PREFIX + "worker:{name}"  # hash: a worker that has its model loaded, and its counters
WORKERS_SEEN = PREFIX + "workers-seen"  # sorted set: loaded workers' names, by when each last said it was alive
WAITING = PREFIX + "waiting:{owner}"  # sorted set: an owner's requests held by 'Prefer: wait', by deadline
RATE_LIMIT_PREFIX = PREFIX + "ratelimit"  # Flask-Limiter's own keys start with this

# No Redis call of ours blocks for long, so a short timeout turns an outage into a prompt error.
SOCKET_TIMEOUT_SECONDS = 5.0


def redis_from_settings(settings: Settings) -> redis.Redis:
    """A client of the configured Redis, decoding replies to str, with the same timeouts everywhere."""
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
    )
