"""Dynamic batching: items submitted from many threads are grouped into one call of a batch function.

Items are grouped by a key (the input shape), so only same-shape items share a call. A group runs as
soon as it holds ``max_batch_size`` items, or when its oldest item has waited ``max_delay_ms``, or,
for batchers that share an ``Attendance``, as soon as every job that could still submit an item is
already waiting on one: a lone job, or all the jobs in the worker having arrived, never waits for a
partner that cannot come. Knows nothing about the model: it calls ``run_batch(items) -> outputs`` and
checks one output per item.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class BatchResult(Generic[Out]):
    """The output for one item, with the identity and size of the batch it ran in."""

    output: Out
    batch_id: str
    batch_size: int


class BatchReason(StrEnum):
    """What made a batch run."""

    FULL = "full"  # it held max_batch_size items
    DELAY = "delay"  # its oldest item had waited max_delay_ms
    NOBODY_ELSE = "nobody_else"  # every job that could still submit an item was waiting on one
    CLOSING = "closing"  # the batcher was closing


@dataclass
class _Pending(Generic[In, Out]):
    item: In
    future: Future[BatchResult[Out]]
    attending: bool = False  # submitted by a thread inside ``Attendance.attending``
    since: float = field(default_factory=time.monotonic)


class Attendance:
    """The jobs that may submit to a set of batchers, and how many of them are waiting on one now.

    A job's thread wraps its work in ``attending()``, and may ``leave()`` early, once it will submit
    nothing more (its last forward pass is done, its post-processing is not); each item it submits
    counts as waiting until its batch has run. A job that cannot submit for a while (it waits for memory
    that only the jobs ahead of it free, once their batches have run) steps ``away()`` meanwhile. When
    every attending job is waiting, no item can still join a batch, so the batchers run what they hold at
    once instead of waiting out ``max_delay_ms``.
    The batchers share this object's lock and condition.
    """

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.active = 0
        self.waiting = 0
        self._local = threading.local()

    @contextmanager
    def attending(self) -> Iterator[Attendee]:
        current: Attendee | None = getattr(self._local, "attendee", None)
        if current is not None and not current.left:  # already counted: a job is one attendee however it nests
            yield current
            return
        attendee = Attendee(self)
        with self.condition:
            self.active += 1
        self._local.attendee = attendee
        try:
            yield attendee
        finally:
            attendee.leave()

    def current_thread_attends(self) -> bool:
        attendee: Attendee | None = getattr(self._local, "attendee", None)
        return attendee is not None and not attendee.left

    def everyone_waiting(self) -> bool:
        """Call with ``condition`` held."""
        return self.active > 0 and self.waiting >= self.active

    def _leave(self, attendee: Attendee) -> None:
        if getattr(self._local, "attendee", None) is attendee:
            self._local.attendee = None
        with self.condition:
            self.active -= 1
            self.condition.notify_all()  # a batcher may have been waiting for this job


class Attendee:
    """One job's place in an ``Attendance``, from ``attending()`` until it leaves."""

    def __init__(self, attendance: Attendance) -> None:
        self._attendance = attendance
        self.left = False

    def leave(self) -> None:
        """The job will submit nothing more: batchers stop waiting for it. Only its first call counts."""
        if not self.left:
            self.left = True
            self._attendance._leave(self)

    @contextmanager
    def away(self) -> Iterator[None]:
        """The job cannot submit during the block (it waits for memory held by jobs that need their
        batches first): batchers do not wait for it until it is back."""
        if self.left:
            yield
            return
        with self._attendance.condition:
            self._attendance.active -= 1
            self._attendance.condition.notify_all()
        try:
            yield
        finally:
            with self._attendance.condition:
                self._attendance.active += 1


class Batcher(Generic[In, Out]):
    """One background thread that runs batches; ``submit`` is thread-safe and returns a Future."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[In]], Sequence[Out]],
        *,
        key: Callable[[In], Hashable],
        max_batch_size: int,
        max_delay_ms: float,
        name: str = "batcher",
        attendance: Attendance | None = None,
        on_batch: Callable[[str, BatchReason], None] | None = None,
    ) -> None:
        """``on_batch(name, reason)`` is told of each batch before it runs (the worker counts them)."""
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._run_batch = run_batch
        self._key = key
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay_ms / 1000
        self._groups: dict[Hashable, list[_Pending[In, Out]]] = {}
        self._attendance = attendance
        self._cond = attendance.condition if attendance is not None else threading.Condition()
        self._closed = False
        self.name = name
        self._on_batch = on_batch
        self.batches_run = 0
        self.reasons: Counter[BatchReason] = Counter()  # batches taken to run, by what made them run
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: In) -> Future[BatchResult[Out]]:
        future: Future[BatchResult[Out]] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            attending = self._attendance is not None and self._attendance.current_thread_attends()
            self._groups.setdefault(self._key(item), []).append(_Pending(item, future, attending))
            if self._attendance is not None and attending:
                self._attendance.waiting += 1
            self._cond.notify_all()  # the batchers sharing an attendance share this condition
        return future

    def close(self, timeout: float | None = None) -> None:
        """Run what is pending, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _due(self, pending: list[_Pending[In, Out]], remaining: float, nobody_to_wait_for: bool) -> BatchReason | None:
        if len(pending) >= self.max_batch_size:
            return BatchReason.FULL
        if remaining <= 0:
            return BatchReason.DELAY
        if nobody_to_wait_for:
            return BatchReason.NOBODY_ELSE
        return BatchReason.CLOSING if self._closed else None

    def _next_batch(self) -> tuple[list[_Pending[In, Out]], BatchReason] | None:
        """Wait until some group is due; take up to max_batch_size items of it, with what made it due.
        None when closed and empty."""
        with self._cond:
            while True:
                now = time.monotonic()
                due_key, reason, wait = None, None, None
                nobody_to_wait_for = self._attendance is not None and self._attendance.everyone_waiting()
                for group_key, pending in self._groups.items():
                    remaining = pending[0].since + self.max_delay - now
                    reason = self._due(pending, remaining, nobody_to_wait_for)
                    if reason is not None:
                        due_key = group_key
                        break
                    wait = remaining if wait is None else min(wait, remaining)
                if due_key is not None and reason is not None:
                    pending = self._groups[due_key]
                    batch, rest = pending[: self.max_batch_size], pending[self.max_batch_size :]
                    if rest:
                        self._groups[due_key] = rest
                    else:
                        del self._groups[due_key]
                    self.reasons[reason] += 1
                    return batch, reason
                if self._closed:
                    return None
                self._cond.wait(wait)

    def _loop(self) -> None:
        while (due := self._next_batch()) is not None:
            batch, reason = due
            if self._on_batch is not None:
                try:
                    self._on_batch(self.name, reason)
                except Exception:  # counting a batch never stops it running
                    log.exception("on_batch failed for batcher %s", self.name)
            self._run(batch)

    def _run(self, batch: list[_Pending[In, Out]]) -> None:
        live = [p for p in batch if p.future.set_running_or_notify_cancel()]
        if not live:
            self._done_waiting(batch)
            return
        batch_id = uuid.uuid4().hex[:12]
        try:
            outputs = self._run_batch([p.item for p in live])
            if len(outputs) != len(live):
                raise RuntimeError(f"batch function returned {len(outputs)} outputs for {len(live)} items")
        except BaseException as exc:
            log.exception("batch %s of %d failed", batch_id, len(live))
            self._done_waiting(batch)
            for pending in live:
                pending.future.set_exception(exc)
            return
        self.batches_run += 1
        self._done_waiting(batch)
        for pending, output in zip(live, outputs, strict=True):
            pending.future.set_result(BatchResult(output, batch_id, len(live)))

    def _done_waiting(self, batch: list[_Pending[In, Out]]) -> None:
        """The batch's attending jobs stop waiting on it (counted before their futures wake them)."""
        if self._attendance is None:
            return
        with self._cond:
            self._attendance.waiting -= sum(1 for pending in batch if pending.attending)
