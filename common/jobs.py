"""Job records in Redis: one hash per job with a TTL; states and their transitions in one place."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, Field, ValidationError

from common import keyspace
from common.errors import BackdropError, RecordDamaged, TooManyPending
from common.id_report import IdPhotoSummary
from common.options import JobOptions


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)

    @classmethod
    def terminal_values(cls) -> frozenset[str]:
        return frozenset(status.value for status in cls if status.is_terminal)


# Which states a job may move to from each state. PROCESSING -> PROCESSING is a redelivery or a
# retry (the attempt count goes up); terminal states never change.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.FAILED, JobStatus.CANCELED}),
    JobStatus.PROCESSING: frozenset({JobStatus.PROCESSING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELED: frozenset(),
}


class InputInfo(BaseModel):
    """What is known of the input photo when the job is accepted: nothing yet for a photo by URL
    (fetched by the worker), hence None rather than made-up zeros."""

    bytes: int | None
    format: str | None
    width: int | None
    height: int | None


class ResultInfo(BaseModel):
    """One stored output of a job (an ID photo's report has no pixel size)."""

    key: str
    format: str
    media_type: str
    bytes: int
    width: int | None
    height: int | None


class JobError(BaseModel):
    code: str
    message: str


class Job(BaseModel):
    id: str
    owner: str
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    deliveries: int = 0  # messages of this job handed to a worker (see ``JobStore.add_delivery``)
    input_key: str
    background_image_key: str | None = None  # the uploaded image of background=image
    input: InputInfo
    options: JobOptions
    results: dict[str, ResultInfo] = Field(default_factory=dict)
    id_photos: list[IdPhotoSummary] | None = None  # ID-photo jobs: one per spec, when succeeded
    error: JobError | None = None
    batch_id: str | None = None  # the API batch this job belongs to
    image_url: str | None = None  # input to fetch, when not uploaded
    pass_id: str | None = None  # the forward pass this job's matte came from
    pass_size: int | None = None


def new_job_id() -> str:
    return uuid.uuid4().hex


def is_record_id(value: str) -> bool:
    """Whether ``value`` has the form of the ids Backdrop makes (32 lower-case hex digits), so that no
    id given by a client can name another Redis key (``<id>:jobs``) or a path."""
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def now() -> datetime:
    return datetime.now(UTC)


# How many jobs of a batch one script call cancels (Redis runs nothing else meanwhile: under 20 ms).
_CANCELS_PER_CALL = 500

# Fields stored as JSON inside the hash; the rest are plain strings.
_JSON_FIELDS = ("input", "options", "results", "id_photos", "error")

# A batch's tally of its jobs per state: fields ARGV-prefix .. state of its record (KEYS-prefix ..
# batch id), kept by the two scripts below in the same atomic step as the job's own change. A batch
# record that has expired, or was written before tallies existed (no queued field), is not touched.
_TALLY_LUA = """
local function tally(batch_prefix, field_prefix, batch, state, by)
  if (not batch) or batch == '' then return end
  local key = batch_prefix .. batch
  if redis.call('HEXISTS', key, field_prefix .. 'queued') == 1 then
    redis.call('HINCRBY', key, field_prefix .. state, by)
  end
end
"""

# Atomic creation: KEYS = [job hash, owner's pending set, pending index, batch-record prefix]; ARGV =
# [ttl seconds, job id, now, pending limit (0: none), tally field prefix, field, value, ...]. Returns 0
# (and writes nothing) when the record already exists, -1 - n when the owner already has n >= limit
# pending jobs, else 1. A job of a batch is counted queued in its batch's tally.
_CREATE_SCRIPT = (
    _TALLY_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local limit = tonumber(ARGV[4])
if limit > 0 then
  local pending = redis.call('SCARD', KEYS[2])
  if pending >= limit then return -1 - pending end
end
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
tally(KEYS[4], ARGV[5], redis.call('HGET', KEYS[1], 'batch_id'), 'queued', 1)
return 1
"""
)

# Atomic transition of one job: ``transition(job hash, pending-set prefix, pending index, batch-record
# prefix)`` with ARGV = [allowed current states (comma separated), ttl seconds, increment attempts
# (0/1), terminal (0/1), now, tally field prefix, field, value, ...]. Returns the previous state, nil
# when the job does not exist, or false and the current state when the transition is not allowed. A
# terminal state takes the job out of its owner's pending set (the concurrent-jobs quota) and out of
# the pending index; any other change is a sign of life there. A job of a batch moves from one state's
# tally to the other's (a job reaches a final state once: no state leaves one).
_TRANSITION_LUA = (
    _TALLY_LUA
    + """
local function transition(job, pending_prefix, pending_index, batch_prefix)
  local current = redis.call('HGET', job, 'status')
  if not current then return nil end
  local allowed = false
  for state in string.gmatch(ARGV[1], '[^,]+') do
    if state == current then allowed = true end
  end
  if not allowed then return false, current end
  for i = 7, #ARGV, 2 do redis.call('HSET', job, ARGV[i], ARGV[i + 1]) end
  if ARGV[3] == '1' then redis.call('HINCRBY', job, 'attempts', 1) end
  local id = redis.call('HGET', job, 'id')
  if ARGV[4] == '1' then
    local owner = redis.call('HGET', job, 'owner')
    if owner and id then redis.call('SREM', pending_prefix .. owner, id) end
    if id then redis.call('ZREM', pending_index, id) end
  elseif id then
    redis.call('ZADD', pending_index, ARGV[5], id)
  end
  local target = redis.call('HGET', job, 'status')
  if target ~= current then
    local batch = redis.call('HGET', job, 'batch_id')
    tally(batch_prefix, ARGV[6], batch, current, -1)
    tally(batch_prefix, ARGV[6], batch, target, 1)
  end
  redis.call('EXPIRE', job, tonumber(ARGV[2]))
  return current
end
"""
)

# One job: KEYS = [pending-set prefix, pending index, batch-record prefix, job hash]; the previous
# state, nil when the job does not exist, or an error reply 'transition:<current>' when not allowed.
_TRANSITION_SCRIPT = (
    _TRANSITION_LUA
    + """
local previous, current = transition(KEYS[4], KEYS[1], KEYS[2], KEYS[3])
if previous == false then return redis.error_reply('transition:' .. current) end
return previous
"""
)

# Many jobs, each in the same step, the same change: KEYS = [pending-set prefix, pending index,
# batch-record prefix, job hash, job hash, ...]. Returns how many changed; a job that does not exist,
# or is in a state the change is not allowed from, is left as it is.
_TRANSITION_MANY_SCRIPT = (
    _TRANSITION_LUA
    + """
local changed = 0
for i = 4, #KEYS do
  if transition(KEYS[i], KEYS[1], KEYS[2], KEYS[3]) then changed = changed + 1 end
end
return changed
"""
)

# One more delivery, unless the job has had its share: KEYS = [job hash, pending index]; ARGV = [most
# deliveries, now, job id, delivery id]. A delivery id already counted (the same delivery, run again) is
# not counted twice. Returns the count, -1 when the limit is reached, nil when there is no record.
_DELIVERY_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local done = tonumber(redis.call('HGET', KEYS[1], 'deliveries')) or 0
if redis.call('HGET', KEYS[1], 'delivery') == ARGV[4] then return done end
if done >= tonumber(ARGV[1]) then return -1 end
redis.call('HSET', KEYS[1], 'delivery', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
"""

# The reconciler's claim on a pending job whose message it found nowhere: KEYS = [job hash, pending
# index]; ARGV = [job id, index score it saw, now, most deliveries]. Nothing changes unless the job is
# still pending with the score seen (so two reconcilers, or a worker starting it meanwhile, cannot both
# act). A queued job's lost message was a delivery that never started: it is counted here.
# Returns 'gone' (no record, or finished: dropped from the index), 'busy' (touched since it was seen),
# 'exhausted' (no delivery left: to be failed) or 'requeue'.
_RECLAIM_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'processing' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 'gone'
end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if (not score) or tonumber(score) ~= tonumber(ARGV[2]) then return 'busy' end
local done = tonumber(redis.call('HGET', KEYS[1], 'deliveries')) or 0
if status == 'queued' then done = redis.call('HINCRBY', KEYS[1], 'deliveries', 1) end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
if done >= tonumber(ARGV[4]) then return 'exhausted' end
return 'requeue'
"""


class JobExists(Exception):
    """A record with this id is already there (written by a concurrent request with the same id)."""


class TransitionRefused(Exception):
    """The job is not in a state from which the requested change is allowed."""

    def __init__(self, job_id: str, current: JobStatus, target: JobStatus) -> None:
        super().__init__(f"job {job_id}: {current.value} -> {target.value} is not allowed")
        self.current = current
        self.target = target


def _encode(fields: Mapping[str, Any]) -> dict[str, str]:
    encoded: dict[str, str] = {}
    for name, value in fields.items():
        if value is None:
            encoded[name] = ""
        elif isinstance(value, BaseModel):
            encoded[name] = value.model_dump_json()
        elif isinstance(value, dict):
            encoded[name] = json.dumps({k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in value.items()})
        elif isinstance(value, list):
            encoded[name] = json.dumps([v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value])
        elif isinstance(value, datetime):
            encoded[name] = value.isoformat()
        else:
            encoded[name] = str(value)
    return encoded


def _decode(raw: Mapping[str, str]) -> Job:
    data: dict[str, Any] = {k: v for k, v in raw.items() if v != ""}
    for name in _JSON_FIELDS:
        if name in data:
            data[name] = json.loads(data[name])
    return Job.model_validate(data)


class JobStore:
    """Reads and changes job records. Every status change goes through ``_transition``."""

    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self.redis = client
        self.ttl = ttl_seconds
        self._script = client.register_script(_TRANSITION_SCRIPT)
        self._many_script = client.register_script(_TRANSITION_MANY_SCRIPT)
        self._create_script = client.register_script(_CREATE_SCRIPT)
        self._delivery_script = client.register_script(_DELIVERY_SCRIPT)
        self._reclaim_script = client.register_script(_RECLAIM_SCRIPT)

    @staticmethod
    def key(job_id: str) -> str:
        return keyspace.JOB.format(job_id=job_id)

    def new(
        self,
        job_id: str,
        input_key: str,
        info: InputInfo,
        options: JobOptions,
        *,
        owner: str,
        batch_id: str | None = None,
        image_url: str | None = None,
        background_image_key: str | None = None,
    ) -> Job:
        """A new queued record, not written yet (``insert``, ``insert_many``)."""
        stamp = now()
        return Job(
            id=job_id,
            owner=owner,
            status=JobStatus.QUEUED,
            created_at=stamp,
            updated_at=stamp,
            expires_at=stamp + timedelta(seconds=self.ttl),
            input_key=input_key,
            input=info,
            options=options,
            batch_id=batch_id,
            image_url=image_url,
            background_image_key=background_image_key,
        )

    def create(self, *args: Any, **kwargs: Any) -> Job:
        """Write a new queued record, with no pending limit: ``new(*args, **kwargs)``, then ``insert``."""
        return self.insert(self.new(*args, **kwargs))

    def insert(self, job: Job, *, max_pending: int = 0) -> Job:
        """Write a new record; ``JobExists`` when the id is taken, ``TooManyPending`` when the owner
        already has ``max_pending`` (0: no limit) queued or processing jobs, checked in the same atomic
        step as the write so that concurrent submissions cannot pass the quota together."""
        created = self._create_script(*self._create_call(job, max_pending))
        if created == 0:
            raise JobExists(job.id)
        if created < 0:
            raise TooManyPending(
                f"{-created - 1} jobs are already queued or processing for this key (limit {max_pending})"
            )
        return job

    def insert_many(self, jobs: Sequence[Job], *, max_pending: int = 0) -> None:
        """Write new records in one round trip, each in its own atomic step with the owner's quota as in
        ``insert`` (a batch checks it for all its jobs first; this holds it against concurrent requests).
        ``TooManyPending`` when any record met a full quota: then none of these records stays (records of
        a batch that is withdrawn, whose tallies go with it). ``JobExists`` names the ids that were taken;
        the others are written."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job in jobs:
                self._create_script(*self._create_call(job, max_pending), client=pipe)
            created = pipe.execute()
        refused = [-result - 1 for result in created if result < 0]
        if refused:
            written = [job for job, result in zip(jobs, created, strict=True) if result == 1]
            for owner in {job.owner for job in written}:
                self.delete_many([job.id for job in written if job.owner == owner], owner)
            raise TooManyPending(
                f"{refused[0]} jobs are already queued or processing for this key (limit {max_pending})"
            )
        taken = [job.id for job, result in zip(jobs, created, strict=True) if result == 0]
        if taken:
            raise JobExists(", ".join(taken))

    def _create_call(self, job: Job, max_pending: int) -> tuple[list[str], list[str]]:
        """The keys and arguments of the create script for ``job``."""
        fields = _encode(
            job.model_dump(exclude_none=False) | {"input": job.input, "options": job.options, "results": {}}
        )
        args: list[str] = [
            str(self.ttl),
            job.id,
            repr(job.created_at.timestamp()),
            str(max_pending),
            keyspace.BATCH_TALLY.format(status=""),
        ]
        for name, value in fields.items():
            args += [name, value]
        keys = [
            self.key(job.id),
            keyspace.PENDING.format(owner=job.owner),
            keyspace.PENDING_SINCE,
            keyspace.BATCH.format(batch_id=""),
        ]
        return keys, args

    def pending_count(self, owner: str) -> int:
        """How many of ``owner``'s jobs are queued or processing (records that expired are dropped)."""
        key = keyspace.PENDING.format(owner=owner)
        members = list(self.redis.smembers(key))
        if not members:
            return 0
        with self.redis.pipeline() as pipe:
            for job_id in members:
                pipe.exists(self.key(job_id))
            alive = pipe.execute()
        gone = [job_id for job_id, exists in zip(members, alive, strict=True) if not exists]
        if gone:
            self.redis.srem(key, *gone)
        return len(members) - len(gone)

    def get(self, job_id: str) -> Job | None:
        """The record, None when absent; ``RecordDamaged`` when it cannot be read."""
        return self._read(job_id, self.redis.hgetall(self.key(job_id)))

    def get_many(self, job_ids: Sequence[str]) -> list[Job | RecordDamaged | None]:
        """The records of ``job_ids`` in one round trip: each a job, None when absent, or the
        ``RecordDamaged`` that ``get`` would raise for it."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.key(job_id))
            raws = pipe.execute()
        found: list[Job | RecordDamaged | None] = []
        for job_id, raw in zip(job_ids, raws, strict=True):
            try:
                found.append(self._read(job_id, raw))
            except RecordDamaged as exc:
                found.append(exc)
        return found

    @staticmethod
    def _read(job_id: str, raw: Mapping[str, str]) -> Job | None:
        if not raw:
            return None
        try:
            return _decode(raw)
        except (ValueError, ValidationError, BackdropError) as exc:
            raise RecordDamaged(
                f"the record of job {job_id} is damaged: delete it",
                owner=raw.get("owner"),
                batch_id=raw.get("batch_id") or None,
            ) from exc

    def delete_damaged(self, job_id: str, owner: str) -> None:
        """Remove a record that can no longer be read (its owner's pending entry with it)."""
        with self.redis.pipeline() as pipe:
            pipe.delete(self.key(job_id))
            pipe.srem(keyspace.PENDING.format(owner=owner), job_id)
            pipe.zrem(keyspace.PENDING_SINCE, job_id)
            pipe.execute()

    def delete(self, job: Job) -> None:
        with self.redis.pipeline() as pipe:
            pipe.delete(self.key(job.id))
            pipe.srem(keyspace.PENDING.format(owner=job.owner), job.id)
            pipe.zrem(keyspace.PENDING_SINCE, job.id)
            pipe.execute()

    def delete_many(self, job_ids: Sequence[str], owner: str) -> None:
        """Remove the records of ``owner``'s jobs ``job_ids`` (with their pending entries), in one round trip."""
        if not job_ids:
            return
        with self.redis.pipeline() as pipe:
            pipe.delete(*(self.key(job_id) for job_id in job_ids))
            pipe.srem(keyspace.PENDING.format(owner=owner), *job_ids)
            pipe.zrem(keyspace.PENDING_SINCE, *job_ids)
            pipe.execute()

    # --- deliveries and the pending index (read by the reconciler) ------------------------------

    def add_delivery(self, job_id: str, most: int, delivery: str) -> bool | None:
        """Count the delivery ``delivery`` (an id, one per message handed to a worker) of the job: True
        when counted (or already counted), False when the job already had ``most`` (it is to fail, not
        run again), None when there is no record."""
        counted = self._delivery_script(
            keys=[self.key(job_id), keyspace.PENDING_SINCE], args=[str(most), repr(time.time()), job_id, delivery]
        )
        return None if counted is None else int(counted) > 0

    def stale(self, before: float, limit: int) -> list[tuple[str, float]]:
        """Pending jobs (id, index score) with no sign of life since ``before`` (a Unix time), oldest first."""
        found = self.redis.zrangebyscore(keyspace.PENDING_SINCE, "-inf", before, start=0, num=limit, withscores=True)
        return [(str(job_id), float(score)) for job_id, score in found]

    def seen(self, job_ids: list[str]) -> None:
        """A sign of life for pending jobs (their message was found): not looked at again for a while."""
        if job_ids:
            self.redis.zadd(keyspace.PENDING_SINCE, dict.fromkeys(job_ids, time.time()), xx=True)

    def reclaim(self, job_id: str, seen_score: float, most: int) -> str:
        """Claim a pending job whose message is lost: 'requeue', 'exhausted', 'busy' or 'gone' (see the script)."""
        return str(
            self._reclaim_script(
                keys=[self.key(job_id), keyspace.PENDING_SINCE],
                args=[job_id, repr(seen_score), repr(time.time()), str(most)],
            )
        )

    def index_pending_sets(self) -> int:
        """Put the jobs of every owner's pending set into the pending index (records written before the
        index existed); returns how many were added."""
        added = 0
        for key in self.redis.scan_iter(keyspace.PENDING.format(owner="*"), count=500):
            members = list(self.redis.smembers(key))
            if members:
                added += int(self.redis.zadd(keyspace.PENDING_SINCE, dict.fromkeys(members, time.time()), nx=True))
        return added

    @staticmethod
    def _transition_keys(*job_ids: str) -> list[str]:
        """The keys of the transition scripts: the prefixes and indexes they touch, then the jobs'."""
        shared = [keyspace.PENDING.format(owner=""), keyspace.PENDING_SINCE, keyspace.BATCH.format(batch_id="")]
        return shared + [JobStore.key(job_id) for job_id in job_ids]

    def _transition_args(self, target: JobStatus, *, count_attempt: bool = False, **fields: Any) -> list[str]:
        """The arguments of the transition scripts that move a job to ``target``."""
        allowed_from = [state.value for state, targets in TRANSITIONS.items() if target in targets]
        stamp = now()
        values = _encode({"status": target.value, "updated_at": stamp, **fields})
        args: list[str] = [
            ",".join(allowed_from),
            str(self.ttl),
            "1" if count_attempt else "0",
            "1" if target.is_terminal else "0",
            repr(stamp.timestamp()),
            keyspace.BATCH_TALLY.format(status=""),
        ]
        for name, value in values.items():
            args += [name, value]
        return args

    def _transition(self, job_id: str, target: JobStatus, *, count_attempt: bool = False, **fields: Any) -> bool:
        """Move ``job_id`` to ``target`` if allowed; False when the record no longer exists."""
        args = self._transition_args(target, count_attempt=count_attempt, **fields)
        try:
            previous = self._script(keys=self._transition_keys(job_id), args=args)
        except redis.ResponseError as exc:
            if str(exc).startswith("transition:"):
                current = str(exc).split(":", 1)[1]
                if current not in {status.value for status in JobStatus}:
                    raise RecordDamaged(f"the record of job {job_id} has no valid status", owner=None) from None
                raise TransitionRefused(job_id, JobStatus(current), target) from None
            raise
        return previous is not None

    def start(self, job_id: str) -> bool:
        """queued/processing -> processing, one more attempt."""
        return self._transition(job_id, JobStatus.PROCESSING, count_attempt=True, started_at=now())

    def succeed(
        self,
        job_id: str,
        results: dict[str, ResultInfo],
        *,
        pass_id: str | None = None,
        pass_size: int | None = None,
        id_photos: list[IdPhotoSummary] | None = None,
    ) -> bool:
        return self._transition(
            job_id,
            JobStatus.SUCCEEDED,
            results=results,
            finished_at=now(),
            pass_id=pass_id,
            pass_size=pass_size,
            id_photos=id_photos,
        )

    def cancel(self, job_id: str) -> bool:
        """queued/processing -> canceled; a running job's results are discarded by its worker."""
        return self._transition(job_id, JobStatus.CANCELED, finished_at=now())

    def cancel_many(self, job_ids: Sequence[str]) -> int:
        """Cancel each of ``job_ids`` that is still queued or processing, a few hundred jobs to a script
        call (each call one atomic step). A finished job or a missing record is left as it is. Returns
        how many were canceled."""
        args = self._transition_args(JobStatus.CANCELED, finished_at=now())
        canceled = 0
        for start in range(0, len(job_ids), _CANCELS_PER_CALL):
            keys = self._transition_keys(*job_ids[start : start + _CANCELS_PER_CALL])
            canceled += int(self._many_script(keys=keys, args=args))
        return canceled

    def fail(self, job_id: str, code: str, message: str) -> bool:
        return self._transition(job_id, JobStatus.FAILED, error=JobError(code=code, message=message), finished_at=now())
