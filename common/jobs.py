"""Job records in Redis: one hash per job with a TTL; states and their transitions in one place."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, Field

KEY_PREFIX = "backdrop:"
JOB_KEY = KEY_PREFIX + "job:{job_id}"
WORKER_KEY = KEY_PREFIX + "worker:{name}"


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


# Which states a job may move to from each state. PROCESSING -> PROCESSING is a redelivery or a
# retry (the attempt count goes up); terminal states never change.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.FAILED}),
    JobStatus.PROCESSING: frozenset({JobStatus.PROCESSING, JobStatus.SUCCEEDED, JobStatus.FAILED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
}


class InputInfo(BaseModel):
    bytes: int
    format: str
    width: int
    height: int


class ResultInfo(BaseModel):
    """One stored output of a job."""

    key: str
    format: str
    media_type: str
    bytes: int
    width: int
    height: int


class JobOptions(BaseModel):
    """The options of a job as given (re-validated by the worker)."""

    background: str = "blue"
    background_image_key: str | None = None
    format: str | None = None
    quality: int = 92
    outputs: list[str] = Field(default_factory=lambda: ["composite"])
    decontaminate: bool = True


class JobError(BaseModel):
    code: str
    message: str


class Job(BaseModel):
    id: str
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    input_key: str
    input: InputInfo
    options: JobOptions
    results: dict[str, ResultInfo] = Field(default_factory=dict)
    error: JobError | None = None
    batch_id: str | None = None  # the forward pass this job's matte came from
    batch_size: int | None = None


def new_job_id() -> str:
    return uuid.uuid4().hex


def now() -> datetime:
    return datetime.now(UTC)


# Fields stored as JSON inside the hash; the rest are plain strings.
_JSON_FIELDS = ("input", "options", "results", "error")

# Atomic transition: KEYS[1] = job hash; ARGV = [allowed current states (comma separated), ttl seconds,
# increment attempts (0/1), field, value, field, value, ...]. Returns the previous state, or
# nil when the job does not exist, or an error reply when the transition is not allowed.
_TRANSITION_SCRIPT = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return nil end
local allowed = false
for state in string.gmatch(ARGV[1], '[^,]+') do
  if state == current then allowed = true end
end
if not allowed then return redis.error_reply('transition:' .. current) end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return current
"""


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

    @staticmethod
    def key(job_id: str) -> str:
        return JOB_KEY.format(job_id=job_id)

    def create(self, job_id: str, input_key: str, info: InputInfo, options: JobOptions) -> Job:
        stamp = now()
        job = Job(
            id=job_id,
            status=JobStatus.QUEUED,
            created_at=stamp,
            updated_at=stamp,
            input_key=input_key,
            input=info,
            options=options,
        )
        fields = _encode(job.model_dump(exclude_none=False) | {"input": info, "options": options, "results": {}})
        with self.redis.pipeline() as pipe:
            pipe.hset(self.key(job_id), mapping=fields)
            pipe.expire(self.key(job_id), self.ttl)
            pipe.execute()
        return job

    def get(self, job_id: str) -> Job | None:
        raw = self.redis.hgetall(self.key(job_id))
        return _decode(raw) if raw else None

    def delete(self, job_id: str) -> None:
        self.redis.delete(self.key(job_id))

    def _transition(self, job_id: str, target: JobStatus, *, count_attempt: bool = False, **fields: Any) -> bool:
        """Move ``job_id`` to ``target`` if allowed; False when the record no longer exists."""
        allowed_from = [state.value for state, targets in TRANSITIONS.items() if target in targets]
        values = _encode({"status": target.value, "updated_at": now(), **fields})
        args: list[str] = [",".join(allowed_from), str(self.ttl), "1" if count_attempt else "0"]
        for name, value in values.items():
            args += [name, value]
        try:
            previous = self._script(keys=[self.key(job_id)], args=args)
        except redis.ResponseError as exc:
            if str(exc).startswith("transition:"):
                raise TransitionRefused(job_id, JobStatus(str(exc).split(":", 1)[1]), target) from None
            raise
        return previous is not None

    def start(self, job_id: str) -> bool:
        """queued/processing -> processing, one more attempt."""
        return self._transition(job_id, JobStatus.PROCESSING, count_attempt=True, started_at=now())

    def succeed(
        self, job_id: str, results: dict[str, ResultInfo], *, batch_id: str | None = None, batch_size: int | None = None
    ) -> bool:
        return self._transition(
            job_id,
            JobStatus.SUCCEEDED,
            results=results,
            finished_at=now(),
            batch_id=batch_id,
            batch_size=batch_size,
        )

    def fail(self, job_id: str, code: str, message: str) -> bool:
        return self._transition(job_id, JobStatus.FAILED, error=JobError(code=code, message=message), finished_at=now())
