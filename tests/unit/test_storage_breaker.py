"""The API's circuit breaker in front of its storage: calls of many threads are in flight together, it
opens after storage errors in a row, fails at once while open, and lets one trial call through after
its reset time. The storage behind it is a stand-in that answers as told."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from common.errors import ObjectNotFound, StorageError
from common.storage.breaker import GuardedStorage


class Inner:
    """Answers ``size`` with ``answer()``; counts the calls that reached it."""

    def __init__(self) -> None:
        self.calls = 0
        self.answer: Callable[[], int] = lambda: 1

    def size(self, key: str) -> int:
        self.calls += 1
        return self.answer()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fail() -> int:
    raise StorageError("the bucket went away")


def guarded(inner: Inner, clock: Clock, failures: int = 2, reset: float = 10.0) -> GuardedStorage:
    return GuardedStorage(inner, failures=failures, reset_seconds=reset, clock=clock)  # type: ignore[arg-type]


def test_calls_of_several_threads_are_in_flight_together() -> None:
    inner = Inner()
    together = threading.Barrier(4, timeout=20)  # broken unless all four wait inside the storage at once
    inner.answer = lambda: together.wait() + 1
    storage = guarded(inner, Clock())
    results: list[Any] = []

    def call() -> None:
        try:
            results.append(storage.size("k"))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not [result for result in results if isinstance(result, BaseException)], results
    assert sorted(results) == [1, 2, 3, 4]


def test_it_opens_after_failures_in_a_row_and_fails_at_once_while_open() -> None:
    inner, clock = Inner(), Clock()
    storage = guarded(inner, clock, failures=2)
    inner.answer = fail
    with pytest.raises(StorageError, match="went away"):
        storage.size("k")
    inner.answer = lambda: 7
    assert storage.size("k") == 7  # a success in between: the count starts again
    inner.answer = fail
    for _ in range(2):
        with pytest.raises(StorageError, match="went away"):
            storage.size("k")
    reached = inner.calls
    clock.now += 9.9
    with pytest.raises(StorageError, match="2 times in a row"):
        storage.size("k")
    assert inner.calls == reached  # open: nothing sent to the storage


def test_a_missing_object_is_an_answer_not_a_failure() -> None:
    inner = Inner()
    storage = guarded(inner, Clock(), failures=1)

    def missing() -> int:
        raise ObjectNotFound("no such object")

    inner.answer = missing
    for _ in range(3):
        with pytest.raises(ObjectNotFound):
            storage.size("k")
    assert inner.calls == 3


def test_after_its_reset_time_one_trial_call_closes_or_reopens_it() -> None:
    inner, clock = Inner(), Clock()
    storage = guarded(inner, clock, failures=1, reset=10.0)
    inner.answer = fail
    with pytest.raises(StorageError, match="went away"):
        storage.size("k")
    clock.now += 10.0
    with pytest.raises(StorageError, match="went away"):  # the trial reached the storage, and failed
        storage.size("k")
    assert inner.calls == 2
    with pytest.raises(StorageError, match="in a row"):  # open again for another 10 s
        storage.size("k")
    clock.now += 10.0
    inner.answer = lambda: 5
    assert storage.size("k") == 5  # the trial succeeded: closed
    assert storage.size("k") == 5 and inner.calls == 4


def test_while_the_trial_call_runs_the_others_fail_at_once() -> None:
    inner, clock = Inner(), Clock()
    storage = guarded(inner, clock, failures=1, reset=10.0)
    inner.answer = fail
    with pytest.raises(StorageError):
        storage.size("k")
    clock.now += 10.0
    inside, release = threading.Event(), threading.Event()

    def slow() -> int:
        inside.set()
        assert release.wait(20)
        return 3

    inner.answer = slow
    trial: list[int] = []
    thread = threading.Thread(target=lambda: trial.append(storage.size("k")))
    thread.start()
    try:
        assert inside.wait(20)
        with pytest.raises(StorageError, match="in a row"):
            storage.size("k")
    finally:
        release.set()
        thread.join(timeout=30)
    assert trial == [3] and inner.calls == 2
    inner.answer = lambda: 4
    assert storage.size("k") == 4
