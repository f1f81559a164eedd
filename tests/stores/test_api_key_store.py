"""ApiKeyStore: keys stored hashed, listed, revoked, authenticated, with webhook secrets, in a real Redis."""

from __future__ import annotations

import pytest
import redis

from common import keyspace
from common.api_keys import ANONYMOUS, ApiKeyStore
from common.errors import Unauthorized


def test_a_key_authenticates_until_revoked(client: redis.Redis) -> None:
    store = ApiKeyStore(client)
    new = store.create("booth 3")
    stored = client.hgetall(keyspace.API_KEY.format(key_id=new.key.id))
    assert new.token not in str(stored) and new.token.split("_", 2)[2] not in str(stored)
    assert store.authenticate(new.token).id == new.key.id
    assert [key.name for key in store.list()] == ["booth 3"]
    assert store.revoke(new.key.id) and not store.revoke("missing")
    with pytest.raises(Unauthorized):
        store.authenticate(new.token)
    assert store.get(new.key.id).revoked_at is not None


@pytest.mark.parametrize("token", ["", "bd_", "bd_x", "nope_a_b", "bd_unknown_secret"])
def test_malformed_or_unknown_tokens_are_refused_alike(client: redis.Redis, token: str) -> None:
    with pytest.raises(Unauthorized, match="invalid or revoked API key"):
        ApiKeyStore(client).authenticate(token)


def test_a_wrong_secret_for_a_real_key_is_refused(client: redis.Redis) -> None:
    store = ApiKeyStore(client)
    new = store.create("a")
    with pytest.raises(Unauthorized):
        store.authenticate(f"bd_{new.key.id}_wrong-secret")


def test_webhook_secrets(client: redis.Redis) -> None:
    store = ApiKeyStore(client)
    new = store.create("a")
    assert store.webhook_secret(new.key.id) == new.key.webhook_secret.strip()
    anonymous = store.webhook_secret(ANONYMOUS)
    assert anonymous.startswith("whsec_") and store.webhook_secret(ANONYMOUS) == anonymous
    with pytest.raises(Unauthorized):
        store.webhook_secret("unknown")
