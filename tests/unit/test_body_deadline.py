"""The API's body deadline (api/server.py, BodyDeadline) on its own: the minimum rate is owed only for
bytes still to come. The rate is enforced over real connections in tests/integration/test_slow_clients.py."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from werkzeug.exceptions import RequestTimeout

from api.server import BodyDeadline

LENGTH = 10


def deadline(received: int, seconds_ago: float) -> tuple[BodyDeadline, SimpleNamespace]:
    request = SimpleNamespace(headers=[("CONTENT-LENGTH", str(LENGTH))], must_close=False)
    body = BodyDeadline(io.BytesIO(b"x" * LENGTH), request, grace=1.0, min_rate=1000)
    if received:
        body.read(received)
    body._started -= seconds_ago  # as if the body had begun that long ago
    return body, request


def test_a_body_late_with_bytes_still_to_come_is_refused_and_its_connection_closed() -> None:
    body, request = deadline(received=4, seconds_ago=100)
    with pytest.raises(RequestTimeout, match="too slowly"):
        body.read(6)
    assert request.must_close


def test_the_end_of_a_whole_body_is_never_late() -> None:
    body, request = deadline(received=LENGTH, seconds_ago=100)
    assert body.read() == b"" and body.read(4) == b""
    assert not request.must_close
