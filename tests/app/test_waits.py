"""Held ``Prefer: wait`` requests are capped per process and per key (each polls Redis while held); past a cap
the preference is ignored (RFC 7240): a 202 at once, with no Preference-Applied header."""

from __future__ import annotations

import io
import threading

import redis
from flask import Flask

from api.app import create_app
from common import keyspace
from common.api_keys import ApiKeyStore
from common.settings import Settings
from tests.app.conftest import png

WAIT = 2  # seconds: no worker runs, so a granted wait lasts all of it


def new_token(settings: Settings, name: str) -> str:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        return ApiKeyStore(client).create(name).token
    finally:
        client.close()


def submit_all(app: Flask, tokens: list[str], prefer: str) -> list[tuple[int, str | None]]:
    """Submits one job per token, all at once; each answer's status and Preference-Applied header, in
    the order of the tokens."""
    answers: dict[int, tuple[int, str | None]] = {}
    barrier = threading.Barrier(len(tokens))

    def submit(seed: int, token: str) -> None:
        client = app.test_client()
        data = {"image": (io.BytesIO(png(seed=seed)), "p.png")}
        headers = {"Authorization": f"Bearer {token}", "Prefer": prefer}
        barrier.wait(timeout=30)
        response = client.post("/v1/jobs", data=data, headers=headers, content_type="multipart/form-data")
        answers[seed] = (response.status_code, response.headers.get("Preference-Applied"))

    threads = [threading.Thread(target=submit, args=(seed, token)) for seed, token in enumerate(tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == len(tokens)
    return [answers[seed] for seed in range(len(tokens))]


def held(answers: list[tuple[int, str | None]]) -> int:
    return sum(1 for _, applied in answers if applied is not None)


def test_waits_of_one_key_past_its_cap_are_answered_at_once(settings: Settings, token: str) -> None:
    app = create_app(settings.model_copy(update={"max_waiting_requests": 8, "max_waiting_per_key": 2}))
    answers = submit_all(app, [token] * 8, f"wait={WAIT}")
    assert [status for status, _ in answers] == [202] * 8  # nothing finishes: no worker
    assert 1 <= held(answers) <= 2
    assert {applied for _, applied in answers} <= {f"wait={WAIT}", None}
    api = app.extensions["backdrop"]
    owner = api.api_keys.authenticate(token).id
    assert api.redis.zcard(keyspace.WAITING.format(owner=owner)) == 0  # every slot given back


def test_waits_of_a_process_are_capped_across_keys(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"max_waiting_requests": 2, "max_waiting_per_key": 8}))
    tokens = [new_token(settings, f"key {index}") for index in range(3)] * 2
    answers = submit_all(app, tokens, f"respond-async, wait={WAIT}")
    assert [status for status, _ in answers] == [202] * 6
    assert 1 <= held(answers) <= 2
    # The slots are back: one more wait is held.
    again = submit_all(app, tokens[:1], "wait=1")
    assert again == [(202, "wait=1")]


def test_no_wait_slots_means_no_waits(settings: Settings, token: str) -> None:
    app = create_app(settings.model_copy(update={"max_waiting_requests": 0}))
    assert submit_all(app, [token], f"wait={WAIT}") == [(202, None)]
    assert submit_all(app, [token], "wait=0") == [(202, "wait=0")]  # nothing to hold: applied as before


def test_one_keys_waits_leave_another_keys_alone(settings: Settings, token: str) -> None:
    app = create_app(settings.model_copy(update={"max_waiting_requests": 8, "max_waiting_per_key": 1}))
    other = new_token(settings, "other")
    answers = submit_all(app, [token] * 4 + [other], f"wait={WAIT}")
    assert held(answers[:4]) == 1
    assert answers[4] == (202, f"wait={WAIT}")
