"""Rate limits: one budget per key for actions, all endpoints together; one for polls; failed
authentications and ``/v1/files`` downloads by client address."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.limits import GENEROUS_POLL_LIMIT, poll_limit
from common.settings import Settings
from tests.app.conftest import new_token

UNKNOWN = "0" * 32


def limited_app(settings: Settings, **update: object) -> Flask:
    app = create_app(settings.model_copy(update=update))
    app.config["TESTING"] = True
    return app


def actions(client: FlaskClient, headers: dict[str, str]) -> list:
    """Four different action endpoints, one request each."""
    return [
        client.post(f"/v1/jobs/{UNKNOWN}/cancel", headers=headers),
        client.delete(f"/v1/jobs/{UNKNOWN}", headers=headers),
        client.post(f"/v1/batches/{UNKNOWN}/cancel", headers=headers),
        client.post("/v1/jobs", headers=headers, data={}, content_type="multipart/form-data"),
    ]


def test_one_action_budget_per_key_across_endpoints(settings: Settings, auth: dict[str, str]) -> None:
    client = limited_app(settings, rate_limit="3/minute", poll_rate_limit="100/minute").test_client()
    first, second, third, fourth = actions(client, auth)
    assert [r.status_code for r in (first, second, third)] == [404, 404, 404]
    assert [r.headers["RateLimit-Remaining"] for r in (first, second, third)] == ["2", "1", "0"]
    assert fourth.status_code == 429 and fourth.get_json()["error"]["code"] == "rate_limited"
    assert fourth.headers["RateLimit-Limit"] == "3" and int(fourth.headers["Retry-After"]) > 0
    # Polls have their own budget, and another key its own actions.
    poll = client.get(f"/v1/jobs/{UNKNOWN}", headers=auth)
    assert poll.status_code == 404 and poll.headers["RateLimit-Limit"] == "100"
    other = {"Authorization": f"Bearer {new_token(settings)}"}
    assert client.post(f"/v1/jobs/{UNKNOWN}/cancel", headers=other).status_code == 404


def test_polls_of_jobs_and_batches_share_a_budget(settings: Settings, auth: dict[str, str]) -> None:
    client = limited_app(settings, rate_limit="2/minute", poll_rate_limit="4/minute").test_client()
    polls = [client.get(f"/v1/{kind}/{UNKNOWN}", headers=auth) for kind in ("jobs", "batches") * 3]
    assert [r.status_code for r in polls] == [404] * 4 + [429] * 2
    assert polls[0].headers["RateLimit-Limit"] == "4" and polls[3].headers["RateLimit-Remaining"] == "0"
    # The actions budget is untouched by the polls.
    assert client.post(f"/v1/jobs/{UNKNOWN}/cancel", headers=auth).status_code == 404


def test_the_poll_budget_by_default(settings: Settings, client: FlaskClient, auth: dict[str, str]) -> None:
    assert poll_limit(Settings()) == GENEROUS_POLL_LIMIT == "6000/minute"  # 30 clients at 1/s: 1800/minute
    assert poll_limit(Settings(rate_limit="5/minute")) == "5/minute"  # an explicit limit applies to polls too
    assert poll_limit(Settings(rate_limit="5/minute", poll_rate_limit="90/second")) == "90/second"
    poll = client.get(f"/v1/jobs/{UNKNOWN}", headers=auth)
    assert poll.status_code == 404 and poll.headers["RateLimit-Limit"] == "6000"
    action = client.post(f"/v1/jobs/{UNKNOWN}/cancel", headers=auth)
    assert action.headers["RateLimit-Limit"] == "600"


def test_failed_authentications_are_limited_by_address(settings: Settings, auth: dict[str, str]) -> None:
    client = limited_app(settings, auth_failure_rate_limit="3/minute").test_client()
    wrong = {"Authorization": "Bearer bd_nothing_here"}
    answers = [client.get(f"/v1/jobs/{UNKNOWN}", headers=wrong) for _ in range(3)]
    answers.append(client.get(f"/v1/jobs/{UNKNOWN}"))  # no key at all: a failure too
    assert [r.status_code for r in answers] == [401, 401, 401, 429]
    assert answers[3].get_json()["error"]["code"] == "rate_limited" and int(answers[3].headers["Retry-After"]) > 0
    assert client.get(f"/v1/jobs/{UNKNOWN}", headers=auth).status_code == 404  # a valid key still passes
    elsewhere = client.get(f"/v1/jobs/{UNKNOWN}", headers=wrong, environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert elsewhere.status_code == 401


def test_file_downloads_are_limited_by_address(settings: Settings) -> None:
    client = limited_app(settings, file_rate_limit="3/minute").test_client()
    link = "/v1/files/results/x.png?expires=1&signature=bad"
    answers = [client.get(link) for _ in range(4)]
    assert [r.status_code for r in answers] == [403, 403, 403, 429]
    assert answers[3].get_json()["error"]["code"] == "rate_limited"
    assert answers[0].headers["RateLimit-Limit"] == "3"
    assert client.get(link, environ_base={"REMOTE_ADDR": "127.0.0.2"}).status_code == 403
    assert client.get("/healthz").status_code == 200  # health checks are never limited
