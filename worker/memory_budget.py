"""Admission of jobs by memory: a job starts only when its estimated peak fits in what the others leave.

The worker's pool threads run jobs side by side (16 at once on a GPU worker); a few large photos at once
would take more memory than the process may use. Each job reserves its estimated peak bytes
(``common.pipeline.job_peak_bytes``) before it decodes anything and releases them when its outputs are
made. Jobs are admitted in arrival order, so a large one is never overtaken for ever by a stream of
small ones; a job larger than the whole budget is admitted alone, once nothing else holds any of it (the
pixel limit bounds how large that can be).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext


class MemoryBudget:
    """A byte-counting, first-come first-served semaphore shared by the threads of one worker process."""

    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes < 1:
            raise ValueError("the memory budget must be positive")
        self.budget_bytes = budget_bytes
        self._in_use = 0
        self._holders = 0
        self._queue: deque[object] = deque()
        self._cond = threading.Condition()

    @property
    def in_use(self) -> int:
        """Bytes reserved by the jobs running now."""
        with self._cond:
            return self._in_use

    @property
    def waiting(self) -> int:
        """Jobs waiting for room."""
        with self._cond:
            return len(self._queue)

    def _fits(self, nbytes: int) -> bool:
        return self._holders == 0 or self._in_use + nbytes <= self.budget_bytes

    @contextmanager
    def reserve(self, nbytes: int, *, while_waiting: AbstractContextManager[object] | None = None) -> Iterator[None]:
        """Hold ``nbytes`` of the budget for the duration of the block, waiting for room first; inside
        ``while_waiting`` for as long as it has to wait (not entered when there is room at once)."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)

            def admitted() -> bool:
                return self._queue[0] is ticket and self._fits(nbytes)

            try:
                if not admitted():
                    with while_waiting if while_waiting is not None else nullcontext():
                        self._cond.wait_for(admitted)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()  # the next in line may fit too, or may now be first
            self._in_use += nbytes
            self._holders += 1
        try:
            yield
        finally:
            with self._cond:
                self._in_use -= nbytes
                self._holders -= 1
                self._cond.notify_all()
