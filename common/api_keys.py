"""API keys: created and revoked by operators, stored hashed in Redis, sent as bearer tokens.

A key reads ``bd_<id>_<secret>``; only its SHA-256 is stored. The id names the key in listings and
owns its jobs. Each key also gets a webhook signing secret, shown once at creation like the key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import redis
from pydantic import BaseModel

from common import keyspace
from common.errors import Unauthorized
from common.jobs import now
from common.webhooks import new_webhook_secret

TOKEN_PREFIX = "bd_"
# The owner of jobs when authentication is disabled (the embedded single-user default).
ANONYMOUS = "anonymous"


class ApiKey(BaseModel):
    id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = None
    webhook_secret: str

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class NewKey(BaseModel):
    """What ``create`` returns: the token is shown once and never stored."""

    key: ApiKey
    token: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeyStore:
    """The API keys in Redis: create, list, revoke, authenticate, and each key's webhook secret."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def create(self, name: str) -> NewKey:
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(24)
        key = ApiKey(id=key_id, name=name, created_at=now(), webhook_secret=new_webhook_secret())
        record = {
            "id": key.id,
            "name": key.name,
            "created_at": key.created_at.isoformat(),
            "webhook_secret": key.webhook_secret,
            "secret_sha256": _digest(secret),
        }
        with self.redis.pipeline() as pipe:
            pipe.hset(keyspace.API_KEY.format(key_id=key_id), mapping=record)
            pipe.sadd(keyspace.API_KEY_INDEX, key_id)
            pipe.execute()
        return NewKey(key=key, token=f"{TOKEN_PREFIX}{key_id}_{secret}")

    def get(self, key_id: str) -> ApiKey | None:
        raw = self.redis.hgetall(keyspace.API_KEY.format(key_id=key_id))
        if not raw:
            return None
        return ApiKey.model_validate({k: v for k, v in raw.items() if k != "secret_sha256" and v != ""})

    def list(self) -> list[ApiKey]:
        keys = [self.get(key_id) for key_id in sorted(self.redis.smembers(keyspace.API_KEY_INDEX))]
        return sorted((k for k in keys if k is not None), key=lambda k: k.created_at)

    def revoke(self, key_id: str) -> bool:
        record = keyspace.API_KEY.format(key_id=key_id)
        if not self.redis.exists(record):
            return False
        self.redis.hsetnx(record, "revoked_at", now().isoformat())
        return True

    def webhook_secret(self, key_id: str) -> str:
        """The secret that signs ``key_id``'s webhooks; the anonymous user's is made on first use."""
        record = keyspace.API_KEY.format(key_id=key_id)
        if key_id == ANONYMOUS:
            self.redis.hsetnx(record, "webhook_secret", new_webhook_secret())
            self.redis.hsetnx(record, "id", ANONYMOUS)
            self.redis.hsetnx(record, "name", "anonymous (authentication disabled)")
            self.redis.hsetnx(record, "created_at", now().isoformat())
        secret = self.redis.hget(record, "webhook_secret")
        if not secret:
            raise Unauthorized(f"no API key {key_id!r}")
        return secret

    def authenticate(self, token: str) -> ApiKey:
        """The active key of ``token``; Unauthorized otherwise (one message for every failure)."""
        refused = Unauthorized("invalid or revoked API key")
        if not token.startswith(TOKEN_PREFIX) or token.count("_") < 2:
            raise refused
        key_id, _, secret = token.removeprefix(TOKEN_PREFIX).partition("_")
        stored = self.redis.hget(keyspace.API_KEY.format(key_id=key_id), "secret_sha256")
        if not stored or not hmac.compare_digest(stored, _digest(secret)):
            raise refused
        key = self.get(key_id)
        if key is None or not key.active:
            raise refused
        return key
