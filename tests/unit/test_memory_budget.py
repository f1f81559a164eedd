"""Admission by memory: real threads reserving bytes of one budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from worker.memory_budget import MemoryBudget

GUARD_SECONDS = 10  # a failure guard only: every wait below ends on an event long before


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + GUARD_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        threading.Event().wait(0.001)


class Job:
    """A thread that reserves ``nbytes``, records when it got in, and holds them until released."""

    def __init__(self, budget: MemoryBudget, name: str, nbytes: int, entered: list[str]) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(budget, name, nbytes, entered), daemon=True)
        self._thread.start()

    def _run(self, budget: MemoryBudget, name: str, nbytes: int, entered: list[str]) -> None:
        with budget.reserve(nbytes):
            entered.append(name)
            self.inside.set()
            self.release.wait(GUARD_SECONDS)

    def finish(self) -> None:
        self.release.set()
        self._thread.join(GUARD_SECONDS)
        assert not self._thread.is_alive()


def _arrive(budget: MemoryBudget, entered: list[str], name: str, nbytes: int) -> Job:
    """Start a job, and wait until it is inside or in the queue."""
    queued = budget.waiting
    job = Job(budget, name, nbytes, entered)
    _until(lambda: job.inside.is_set() or budget.waiting > queued)
    return job


def test_jobs_wait_for_room_in_arrival_order() -> None:
    budget = MemoryBudget(1000)
    entered: list[str] = []
    a = _arrive(budget, entered, "a", 600)
    b = _arrive(budget, entered, "b", 600)
    c = _arrive(budget, entered, "c", 100)  # would fit beside a, but b came first
    assert budget.waiting == 2
    assert entered == ["a"]
    assert budget.in_use == 600

    a.finish()
    assert b.inside.wait(GUARD_SECONDS)
    assert c.inside.wait(GUARD_SECONDS)  # 600 + 100 fit together
    assert entered == ["a", "b", "c"]
    assert budget.in_use == 700
    b.finish()
    c.finish()
    assert budget.in_use == 0
    assert budget.waiting == 0


def test_a_job_larger_than_the_budget_runs_alone() -> None:
    budget = MemoryBudget(1000)
    entered: list[str] = []
    small = _arrive(budget, entered, "small", 100)
    huge = _arrive(budget, entered, "huge", 5000)
    after = _arrive(budget, entered, "after", 10)
    assert budget.waiting == 2

    small.finish()
    assert huge.inside.wait(GUARD_SECONDS)
    assert budget.in_use == 5000
    assert not after.inside.is_set()
    huge.finish()
    assert after.inside.wait(GUARD_SECONDS)
    after.finish()
    assert entered == ["small", "huge", "after"]


def test_many_threads_never_exceed_the_budget() -> None:
    budget = MemoryBudget(1000)
    lock = threading.Lock()
    peak = [0]
    concurrent = [0, 0]  # now, most

    def job(nbytes: int) -> None:
        with budget.reserve(nbytes):
            with lock:
                peak[0] = max(peak[0], budget.in_use)
                concurrent[0] += 1
                concurrent[1] = max(concurrent[1], concurrent[0])
            threading.Event().wait(0.002)
            with lock:
                concurrent[0] -= 1

    threads = [threading.Thread(target=job, args=(100 + 50 * (i % 7),)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(GUARD_SECONDS)
    assert peak[0] <= 1000
    assert concurrent[1] >= 2
    assert budget.in_use == 0


def test_an_error_inside_gives_the_bytes_back() -> None:
    budget = MemoryBudget(1000)
    with pytest.raises(RuntimeError), budget.reserve(800):
        raise RuntimeError("the job failed")
    assert budget.in_use == 0
    with budget.reserve(1000):
        assert budget.in_use == 1000


def test_the_budget_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MemoryBudget(0)


class Away:
    """A context manager that records whether it was entered."""

    def __init__(self) -> None:
        self.entered = self.exited = False

    def __enter__(self) -> None:
        self.entered = True

    def __exit__(self, *exc: object) -> None:
        self.exited = True


def test_while_waiting_is_entered_only_for_a_wait_and_left_once_admitted() -> None:
    budget = MemoryBudget(100)
    at_once = Away()
    with budget.reserve(60, while_waiting=at_once):
        assert not at_once.entered  # there was room: no wait
        queued = Away()
        admitted = threading.Event()

        def second() -> None:
            with budget.reserve(60, while_waiting=queued):
                assert queued.exited  # back before its job starts
                admitted.set()

        thread = threading.Thread(target=second, daemon=True)
        thread.start()
        _until(lambda: budget.waiting == 1)
        assert queued.entered and not queued.exited
    assert admitted.wait(GUARD_SECONDS)
    thread.join(GUARD_SECONDS)
