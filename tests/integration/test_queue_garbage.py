"""A queue item that is not a message is logged and dropped; the worker stays up and runs the next job."""

from __future__ import annotations

from collections.abc import Callable

from tests.integration.stack import Stack
from tests.integration.test_service import rgba_photo
from worker.embedded import wait_until


def test_items_that_are_not_messages_do_not_stop_the_worker(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("local")
    worker = stack.start_worker(concurrency=1)
    stack.start_api()
    for item in ("this is not a message", '{"json": "but not a kombu envelope"}', "[1, 2"):
        stack.redis.lpush("interactive", item)
    wait_until(lambda: stack.redis.llen("interactive") == 0, 60, "the worker to read the queue")
    job = stack.wait_for(stack.submit(rgba_photo(3)).json()["id"], timeout=60)
    assert job["status"] == "succeeded"
    assert worker.alive(), worker.log_tail()
    assert worker.log_of_this_run().count("dropped a queue item that is not a message") == 3
