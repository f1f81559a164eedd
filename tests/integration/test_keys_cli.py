"""``backdrop keys``: create, list and revoke keys in a real Redis; the token works until revoked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from common.api_keys import ApiKeyStore
from common.errors import Unauthorized

BACKDROP = Path(sys.executable).parent / "backdrop"


def run_keys(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BACKDROP_REDIS_URL": redis_url}
    return subprocess.run([str(BACKDROP), "keys", *args], env=env, capture_output=True, text=True, timeout=60)


def test_create_list_revoke(redis_url: str) -> None:
    url = redis_url
    created = run_keys(url, "create", "--name", "photo booth 3")
    assert created.returncode == 0, created.stderr
    token = re.search(r"api key:\s+(\S+)", created.stdout).group(1)
    key_id = re.search(r"id:\s+(\S+)", created.stdout).group(1)
    assert re.search(r"webhook secret:\s+whsec_\S+", created.stdout)

    client = redis.Redis.from_url(url, decode_responses=True)
    store = ApiKeyStore(client)
    assert store.authenticate(token).name == "photo booth 3"
    assert token not in str(client.hgetall(f"backdrop:apikey:{key_id}"))  # stored hashed only

    listed = run_keys(url, "list")
    assert key_id in listed.stdout and "active" in listed.stdout and token not in listed.stdout

    assert run_keys(url, "revoke", key_id).returncode == 0
    with pytest.raises(Unauthorized):
        store.authenticate(token)
    assert "revoked" in run_keys(url, "list").stdout
    missing = run_keys(url, "revoke", "nope")
    assert missing.returncode == 1 and "no key 'nope'" in missing.stderr
    client.close()
