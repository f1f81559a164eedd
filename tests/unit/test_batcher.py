"""The batcher groups concurrent same-key items into one call and hands each caller its own output."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from worker.batcher import Batcher

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


def _batcher(recorder: Recorder, size: int = 8, delay_ms: float = 300) -> Batcher[tuple[str, int], int]:
    return Batcher(recorder, key=lambda item: item[0], max_batch_size=size, max_delay_ms=delay_ms)


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
