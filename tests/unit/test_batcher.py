"""The batcher groups concurrent same-key items into one call and hands each caller its own output."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from worker.batcher import Attendance, Batcher, BatchReason
from worker.memory_budget import MemoryBudget

WAIT = 10  # seconds: a bound on a hang, not a timing assertion


class Recorder:
    def __init__(self, fail: bool = False, short: bool = False) -> None:
        self.calls: list[list[tuple[str, int]]] = []
        self.fail = fail
        self.short = short
        self.lock = threading.Lock()

    def __call__(self, items: Sequence[tuple[str, int]]) -> list[int]:
        with self.lock:
            self.calls.append(list(items))
        if self.fail:
            raise ValueError("model exploded")
        outputs = [value * 10 for _, value in items]
        return outputs[:-1] if self.short else outputs


def _batcher(
    recorder: Recorder, size: int = 8, delay_ms: float = 300, attendance: Attendance | None = None
) -> Batcher[tuple[str, int], int]:
    return Batcher(
        recorder, key=lambda item: item[0], max_batch_size=size, max_delay_ms=delay_ms, attendance=attendance
    )


def test_concurrent_items_share_calls_and_get_their_own_outputs() -> None:
    recorder = Recorder()
    batcher = _batcher(recorder, size=8)
    barrier = threading.Barrier(16)
    results: dict[int, tuple[int, str, int]] = {}

    def client(i: int) -> None:
        barrier.wait()
        result = batcher.submit(("512x512", i)).result(WAIT)
        results[i] = (result.output, result.batch_id, result.batch_size)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    batcher.close(WAIT)

    assert {i: r[0] for i, r in results.items()} == {i: i * 10 for i in range(16)}
    assert len(recorder.calls) < 16
    assert all(len(call) <= 8 for call in recorder.calls)
    assert sum(len(call) for call in recorder.calls) == 16
    assert len({r[1] for r in results.values()}) == len(recorder.calls) == batcher.batches_run
    for _, batch_id, size in results.values():
        assert size == sum(1 for r in results.values() if r[1] == batch_id)


def test_different_keys_never_share_a_call() -> None:
    recorder = Recorder()
    batcher = _batcher(recorder, size=8, delay_ms=200)
    futures = [batcher.submit((shape, i)) for i, shape in enumerate(["a", "b", "a", "b", "c"])]
    assert [f.result(WAIT).output for f in futures] == [0, 10, 20, 30, 40]
    batcher.close(WAIT)
    assert all(len({shape for shape, _ in call}) == 1 for call in recorder.calls)
    assert sorted(len(call) for call in recorder.calls) == [1, 2, 2]


def test_a_lone_item_runs_without_a_full_batch() -> None:
    recorder = Recorder()
    batcher = _batcher(recorder, size=64, delay_ms=5)
    assert batcher.submit(("a", 4)).result(WAIT).output == 40
    batcher.close(WAIT)


def test_a_failing_batch_fails_its_items_and_the_batcher_goes_on() -> None:
    recorder = Recorder(fail=True)
    batcher = _batcher(recorder, size=2, delay_ms=1000)
    futures = [batcher.submit(("a", i)) for i in range(2)]
    for future in futures:
        with pytest.raises(ValueError, match="model exploded"):
            future.result(WAIT)
    recorder.fail = False
    assert batcher.submit(("a", 3)).result(WAIT).output == 30
    batcher.close(WAIT)


def test_one_output_per_item_is_checked() -> None:
    batcher = _batcher(Recorder(short=True), size=2, delay_ms=1000)
    futures = [batcher.submit(("a", i)) for i in range(2)]
    for future in futures:
        with pytest.raises(RuntimeError, match="1 outputs for 2 items"):
            future.result(WAIT)
    batcher.close(WAIT)


def test_close_runs_pending_items_then_refuses_new_ones() -> None:
    recorder = Recorder()
    batcher = _batcher(recorder, size=100, delay_ms=60_000)
    future = batcher.submit(("a", 1))
    batcher.close(WAIT)
    assert future.result(0).output == 10
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(("a", 2))


def test_cancelled_items_are_skipped() -> None:
    recorder = Recorder()
    batcher = _batcher(recorder, size=3, delay_ms=60_000)
    first = batcher.submit(("a", 1))
    assert first.cancel()
    second = batcher.submit(("a", 2))
    third = batcher.submit(("a", 3))
    batcher.close(WAIT)
    assert [second.result(0).output, third.result(0).output] == [20, 30]
    assert recorder.calls == [[("a", 2), ("a", 3)]]


# --- an attendance: no waiting for a partner that cannot come --------------------------------------
# The delay is a minute in these tests: a result within WAIT seconds can only come from attendance.

LONG_DELAY_MS = 60_000


def test_a_lone_attending_job_does_not_wait_out_the_delay() -> None:
    attendance = Attendance()
    recorder = Recorder()
    batcher = _batcher(recorder, size=8, delay_ms=LONG_DELAY_MS, attendance=attendance)
    with attendance.attending():
        first = batcher.submit(("a", 1)).result(WAIT)
        second = batcher.submit(("a", 2)).result(WAIT)  # the same job again, after its first batch ran
        with attendance.attending():  # nested: still one job
            assert attendance.active == 1
            third = batcher.submit(("a", 3)).result(WAIT)
        assert attendance.active == 1 and attendance.current_thread_attends()
    assert (first.output, first.batch_size, second.output, second.batch_size) == (10, 1, 20, 1)
    assert (third.output, third.batch_size) == (30, 1)
    assert attendance.active == 0 and attendance.waiting == 0
    batcher.close(WAIT)


def test_an_attending_job_waits_for_the_other_attending_job() -> None:
    attendance = Attendance()
    recorder = Recorder()
    batcher = _batcher(recorder, size=8, delay_ms=LONG_DELAY_MS, attendance=attendance)
    both_attend = threading.Barrier(2)
    first_submitted = threading.Event()
    results: dict[str, tuple[int, int]] = {}

    def job(name: str, value: int) -> None:
        with attendance.attending():
            both_attend.wait(WAIT)
            if name == "second":
                first_submitted.wait(WAIT)
            future = batcher.submit(("a", value))
            first_submitted.set()
            result = future.result(WAIT)
            results[name] = (result.output, result.batch_size)

    threads = [threading.Thread(target=job, args=args) for args in (("first", 1), ("second", 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    # The first item was held until the second job's came: one batch of two.
    assert results == {"first": (10, 2), "second": (20, 2)}
    assert recorder.calls == [[("a", 1), ("a", 2)]]
    batcher.close(WAIT)


def test_a_job_that_leaves_without_submitting_releases_the_waiting_one() -> None:
    attendance = Attendance()
    batcher = _batcher(Recorder(), size=8, delay_ms=LONG_DELAY_MS, attendance=attendance)
    other_attends, may_leave = threading.Event(), threading.Event()

    def failing_job() -> None:  # say, a photo that did not decode
        with attendance.attending():
            other_attends.set()
            may_leave.wait(WAIT)

    other = threading.Thread(target=failing_job)
    other.start()
    other_attends.wait(WAIT)
    with attendance.attending():
        future = batcher.submit(("a", 3))
        assert not future.done()  # held for the other job, which is still at work
        may_leave.set()
        assert future.result(WAIT).output == 30
    other.join(WAIT)
    batcher.close(WAIT)


def test_a_job_that_has_left_is_not_waited_for_while_it_finishes() -> None:
    attendance = Attendance()
    batcher = _batcher(Recorder(), size=8, delay_ms=LONG_DELAY_MS, attendance=attendance)
    left, may_end = threading.Event(), threading.Event()

    def job_past_its_last_batch() -> None:
        with attendance.attending() as attendee:
            attendee.leave()  # its forward pass is done; its post-processing goes on
            left.set()
            may_end.wait(WAIT)
            attendee.leave()  # a second call changes nothing

    other = threading.Thread(target=job_past_its_last_batch)
    other.start()
    left.wait(WAIT)
    with attendance.attending():
        assert attendance.active == 1
        assert batcher.submit(("a", 4)).result(WAIT).batch_size == 1  # not held for the other job
    may_end.set()
    other.join(WAIT)
    assert attendance.active == 0
    batcher.close(WAIT)


def test_batchers_sharing_an_attendance_count_jobs_waiting_on_either() -> None:
    attendance = Attendance()
    network = _batcher(Recorder(), size=8, delay_ms=LONG_DELAY_MS, attendance=attendance)
    finishing = _batcher(Recorder(), size=8, delay_ms=LONG_DELAY_MS, attendance=attendance)
    in_network = threading.Event()
    results: dict[str, int] = {}

    def network_job() -> None:
        with attendance.attending():
            future = network.submit(("a", 1))
            in_network.set()
            results["network"] = future.result(WAIT).output

    thread = threading.Thread(target=network_job)
    with attendance.attending():
        thread.start()
        in_network.wait(WAIT)
        # Both jobs now wait, one on each batcher: neither can gain a partner, so both run.
        results["finishing"] = finishing.submit(("b", 2)).result(WAIT).output
    thread.join(WAIT)
    assert results == {"network": 10, "finishing": 20}
    network.close(WAIT)
    finishing.close(WAIT)


def test_items_of_threads_outside_the_attendance_keep_the_delay() -> None:
    attendance = Attendance()
    batcher = _batcher(Recorder(), size=8, delay_ms=LONG_DELAY_MS, attendance=attendance)
    future = batcher.submit(("a", 1))  # no job attends: nothing says nobody else is coming
    assert attendance.waiting == 0
    with attendance.attending():
        # One attending job, waiting: the group runs, the outside item with it.
        assert batcher.submit(("a", 2)).result(WAIT).batch_size == 2
    assert future.result(WAIT).output == 10
    batcher.close(WAIT)


def test_a_job_away_waiting_for_memory_is_not_waited_for() -> None:
    """The second job waits for the memory the first holds until the first has finished, so it cannot
    join the first job's batch: that batch runs without waiting for it, and the second runs after."""
    attendance = Attendance()
    batcher = _batcher(Recorder(), size=8, delay_ms=LONG_DELAY_MS, attendance=attendance)
    memory = MemoryBudget(100)
    results: dict[str, int] = {}

    def job(name: str, value: int) -> None:
        with attendance.attending() as attendee, memory.reserve(100, while_waiting=attendee.away()):
            if name == "first":
                second.start()
                deadline = time.monotonic() + WAIT
                while memory.waiting == 0 and time.monotonic() < deadline:  # until the second job is queued
                    time.sleep(0.001)
                assert attendance.active == 1  # ...and away
            results[name] = batcher.submit(("a", value)).result(WAIT).batch_size

    second = threading.Thread(target=job, args=("second", 2))
    first = threading.Thread(target=job, args=("first", 1))
    first.start()
    first.join(WAIT)
    second.join(WAIT)
    assert results == {"first": 1, "second": 1}
    assert batcher.reasons == {BatchReason.NOBODY_ELSE: 2}
    assert attendance.active == 0 and attendance.waiting == 0
    batcher.close(WAIT)


def test_a_job_that_has_left_stays_out_after_being_away() -> None:
    attendance = Attendance()
    with attendance.attending() as attendee:
        with attendee.away():
            assert attendance.active == 0
        assert attendance.active == 1
        attendee.leave()
        with attendee.away():
            assert attendance.active == 0
        assert attendance.active == 0


def test_each_batch_is_counted_by_what_made_it_run() -> None:
    told: list[tuple[str, BatchReason]] = []

    def counted(delay_ms: float) -> Batcher[tuple[str, int], int]:
        return Batcher(
            Recorder(),
            key=lambda item: item[0],
            max_batch_size=2,
            max_delay_ms=delay_ms,
            name=f"after {delay_ms:g} ms",
            on_batch=lambda name, reason: told.append((name, reason)),
        )

    short = counted(500)  # the two items of the full batch are submitted well within it
    full = [short.submit(("a", 1)), short.submit(("a", 2))]
    assert [future.result(WAIT).batch_size for future in full] == [2, 2]
    assert short.submit(("b", 3)).result(WAIT).batch_size == 1  # alone until its delay was out
    short.close(WAIT)
    long = counted(LONG_DELAY_MS)
    pending = long.submit(("c", 4))
    long.close(WAIT)  # runs what it holds
    assert pending.result(0).output == 40
    assert short.reasons == {BatchReason.FULL: 1, BatchReason.DELAY: 1}
    assert long.reasons == {BatchReason.CLOSING: 1}
    assert told == [
        ("after 500 ms", BatchReason.FULL),
        ("after 500 ms", BatchReason.DELAY),
        ("after 60000 ms", BatchReason.CLOSING),
    ]


def test_a_failing_batch_counter_does_not_stop_the_batch() -> None:
    def broken(name: str, reason: BatchReason) -> None:
        raise RuntimeError("metrics are down")

    batcher = Batcher(Recorder(), key=lambda item: item[0], max_batch_size=1, max_delay_ms=0, on_batch=broken)
    assert batcher.submit(("a", 5)).result(WAIT).output == 50
    batcher.close(WAIT)
