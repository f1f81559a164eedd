"""No accepted job is lost or stuck, each time killing a real process at the moment that matters: a
worker frozen just after Redis handed it a message, Redis itself, the API between a record and its
message, and a job that takes its worker down with it at every delivery."""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from common import keyspace
from common.batches import BatchStore
from common.client import encode_multipart
from common.jobs import InputInfo, Job, JobStore, new_job_id
from common.options import JobOptions
from common.queue import INTERACTIVE_QUEUE, jobs_in_broker, make_celery, send_job
from common.settings import Settings
from common.storage import input_key
from tests.conftest import local_storage
from tests.integration.stack import Stack, http, multipart
from tests.integration.test_service import rgba_photo
from tests.silent_server import SilentServer
from worker import celery_app, tasks
from worker.embedded import ManagedProcess, free_port, start_redis, wait_until
from worker.notifications import JobEvents
from worker.reconciler import Reconciler
from worker.runtime import ModelRunner
from worker.service import WorkerService

# Short visibility timeouts and a reconciler that runs often and looks at jobs untouched for one
# visibility timeout, so that every repair happens within seconds.
FAST = {
    "BACKDROP_VISIBILITY_TIMEOUT": "5",
    "BACKDROP_RECONCILE_INTERVAL_SECONDS": "0.5",
    "BACKDROP_RECONCILE_AFTER_TIMEOUTS": "1",
}
# The reconciler out of the way: a repair must come from the mechanism under test alone.
NO_RECONCILER = {**FAST, "BACKDROP_RECONCILE_AFTER_TIMEOUTS": "1000"}
DEADLINE = 60  # seconds: bound on every wait of these tests
OUTAGE_SECONDS = 3  # how long Redis stays down once a running job has met its crash


def store(stack: Stack) -> JobStore:
    return JobStore(stack.redis, stack.settings.job_ttl_seconds)


def record(stack: Stack, job_id: str) -> Job:
    job = store(stack).get(job_id)
    assert job is not None, f"job {job_id} has no record"
    return job


def submit(stack: Stack, seed: int, **fields: str) -> str:
    response = stack.submit(rgba_photo(seed, size=(120, 160)), background="red", **fields)
    assert response.status == 202, response.body
    return response.json()["id"]


def pending_ids(stack: Stack) -> set[str]:
    """Every job id in an owner's pending set (the quota)."""
    found: set[str] = set()
    for key in stack.redis.scan_iter(keyspace.PENDING.format(owner="*")):
        found |= stack.redis.smembers(key)
    return found


def wait_all(stack: Stack, ids: list[str], status: str = "succeeded") -> dict[str, dict]:
    jobs = {job_id: stack.wait_for(job_id, timeout=DEADLINE) for job_id in ids}
    assert {job_id: job["status"] for job_id, job in jobs.items()} == dict.fromkeys(ids, status)
    return jobs


# --- 1. a worker killed between kombu's pop and its unacked record ---------------------------------------


def freeze_until_a_message_is_taken(stack: Stack, worker: ManagedProcess, seed: int) -> tuple[list[str], str]:
    """Freeze the idle worker (SIGSTOP) and submit a job: Redis hands it at once to the frozen worker's
    pending BRPOP, so that the message is out of the queue and not yet recorded as unacknowledged. That
    BRPOP lasts a second; when it had expired, thaw the worker (which runs the job) and try again.
    Returns the jobs submitted and the one taken."""
    submitted: list[str] = []
    for attempt in range(10):
        wait_until(lambda: stack.redis.llen(INTERACTIVE_QUEUE) == 0, DEADLINE, "the worker to take its jobs")
        worker.send_signal(signal.SIGSTOP)
        job_id = submit(stack, seed + attempt)
        submitted.append(job_id)
        if stack.redis.llen(INTERACTIVE_QUEUE) == 0:
            assert job_id not in jobs_in_broker(stack.redis)
            return submitted, job_id
        worker.send_signal(signal.SIGCONT)
    pytest.fail("the frozen worker never took a message")


def test_a_worker_killed_between_pop_and_unacked_loses_no_job(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory("local", **FAST)
    worker = stack.start_worker(concurrency=2)
    stack.start_api()
    submitted, lost = freeze_until_a_message_is_taken(stack, worker, seed=100)
    submitted += [submit(stack, 120 + i) for i in range(2)]  # queued behind it, while the worker is frozen
    worker.send_signal(signal.SIGKILL)
    worker.process.wait(30)
    assert record(stack, lost).status.value == "queued"
    assert lost not in jobs_in_broker(stack.redis)  # in no queue and not unacknowledged: only the record

    stack.start_worker(concurrency=2)
    wait_all(stack, submitted)
    assert record(stack, lost).deliveries == 2  # the lost delivery, then the reconciler's


def test_the_reconciler_enqueues_only_stale_jobs_without_a_message(redis_url: str, tmp_path: Path) -> None:
    """One run, in this process against a real Redis: each kind of pending job, and a canceled one."""
    settings = Settings(redis_url=redis_url, visibility_timeout=5, reconcile_after_timeouts=1, max_deliveries=2)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    jobs = JobStore(client, settings.job_ttl_seconds)
    celery = make_celery(settings)
    info = InputInfo(bytes=1, format="PNG", width=1, height=1)

    def pending(name: str) -> str:
        job_id = new_job_id()
        jobs.create(job_id, input_key(job_id), info, JobOptions(), owner=name)
        return job_id

    waiting, lost, spent, canceled, fresh = (pending(name) for name in ("a", "b", "c", "d", "e"))
    send_job(celery, waiting, INTERACTIVE_QUEUE)  # its message is in the queue
    jobs.add_delivery(spent, settings.max_deliveries, "d1")
    jobs.add_delivery(spent, settings.max_deliveries, "d2")
    jobs.start(spent)  # its last delivery died with its worker, and the message is gone
    jobs.cancel(canceled)
    old = time.time() - 60
    client.zadd(keyspace.PENDING_SINCE, {job_id: old for job_id in (waiting, lost, spent)})
    storage = local_storage(tmp_path)
    events = JobEvents(None, jobs, BatchStore(client, jobs))
    reconciler = Reconciler(client, jobs, events, storage, celery, settings)
    try:
        report = reconciler.run_once(time.time())
        assert report.requeued == [lost] and report.failed == [spent] and report.alive == 1
        assert jobs_in_broker(client) == {waiting, lost}
        assert jobs.get(lost).deliveries == 1  # the lost message, never started, counted
        failed = jobs.get(spent)
        assert failed.status.value == "failed" and failed.error.code == "worker_lost"
        assert jobs.get(canceled).status.value == "canceled" and jobs.get(fresh).status.value == "queued"
        assert reconciler.run_once(time.time()).requeued == []  # each is looked at again only when stale again
    finally:
        client.close()


# --- 2. Redis killed (kill -9) and restarted on its append-only file ----------------------------------


class AofRedis:
    """A Redis of this test alone, with an append-only file fsynced at every write, on one port and data
    directory: killed with SIGKILL and started again on the same file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: ManagedProcess | None = None

    def start(self) -> None:
        self.process = start_redis(self.root / "aof", self.port, persist=True, log_path=self.root / "redis.log")
        client = redis.Redis.from_url(self.url)
        try:
            client.config_set("appendfsync", "always")  # whatever was accepted is on disk
        finally:
            client.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.process.wait(10)
        self.process.stop()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=10)


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[AofRedis]:
    server = AofRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_a_redis_crash_mid_job_loses_no_job(stack_factory: Callable[..., Stack], aof_redis: AofRedis) -> None:
    slow = {"BACKDROP_INFERENCE_REF_SIZE": "512", "BACKDROP_INFERENCE_MAX_SIDE": "512", "BACKDROP_MAX_BATCH_SIZE": "2"}
    stack = stack_factory("local", BACKDROP_REDIS_URL=aof_redis.url, **NO_RECONCILER, **slow)
    try:
        worker = stack.start_worker(concurrency=4)
        stack.start_api()
        ids = [submit(stack, 200 + i) for i in range(8)]
        states = store(stack)
        wait_until(
            lambda: sum(states.get(job_id).status.value == "processing" for job_id in ids) >= 2, DEADLINE, "jobs to run"
        )
        aof_redis.kill()
        log = worker.log_path
        met = re.compile(r"job [0-9a-f]{32}: .*Connection refused")  # a running job's Redis call failed
        wait_until(lambda: met.search(log.read_text(errors="replace")) is not None, DEADLINE, "a job to meet it")
        time.sleep(OUTAGE_SECONDS)  # the outage itself: longer than redis-py's own reconnection attempts
        aof_redis.start()

        wait_all(stack, ids)
        assert worker.alive(), worker.log_tail()
        assert "had no message" not in log.read_text(errors="replace")  # no repair by the reconciler was needed
    finally:
        stack.stop()  # before this test's Redis goes


def test_a_job_meeting_a_redis_crash_waits_in_its_worker_and_never_retries_through_the_broker(
    aof_redis: AofRedis,
    official_format_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The task itself, in this process, against a Redis killed under it: ``self.retry`` would publish
    through the dead broker, and Celery drops the message when that publish fails."""
    settings = Settings(redis_url=aof_redis.url, data_dir=tmp_path, inference_ref_size=64, max_delay_ms=0)
    client = redis.Redis.from_url(aof_redis.url, decode_responses=True)
    storage = local_storage(tmp_path)
    svc = WorkerService(settings, ModelRunner.load(official_format_checkpoint, "cpu", threads=1), storage, client)
    monkeypatch.setattr(celery_app, "_service", svc)
    retried: list[BaseException | None] = []
    original_retry = tasks.process_job_task.retry

    def spy(*args: object, **kwargs: object) -> object:
        retried.append(kwargs.get("exc"))  # type: ignore[arg-type]
        return original_retry(*args, **kwargs)

    monkeypatch.setattr(tasks.process_job_task, "retry", spy)
    job_id = new_job_id()
    photo = rgba_photo(250, size=(64, 64))
    storage.put(input_key(job_id), photo, "application/octet-stream")
    info = InputInfo(bytes=len(photo), format="PNG", width=64, height=64)
    svc.jobs.create(job_id, input_key(job_id), info, JobOptions(), owner="tests")

    caplog.set_level(logging.WARNING, logger=tasks.__name__)
    aof_redis.kill()
    running = threading.Thread(target=tasks.process_job_task.apply, args=([job_id],), daemon=True)
    running.start()

    def met() -> bool:
        return not running.is_alive() or any("Redis is unreachable" in r.getMessage() for r in caplog.records)

    wait_until(met, DEADLINE, "the job to meet the outage")
    aof_redis.start()
    running.join(DEADLINE)
    try:
        assert not running.is_alive()
        assert retried == []
        job = svc.jobs.get(job_id)
        assert job.status.value == "succeeded" and job.deliveries == 1
    finally:
        svc.close()


# --- 3. the API killed between a record and its message; a client retrying with its key, for a job and
# for a batch ------------------------------------------------------------------------------------------


def test_an_api_killed_between_record_and_message_leaves_no_stuck_or_second_job(
    stack_factory: Callable[..., Stack], tmp_path: Path
) -> None:
    marker = tmp_path / "exit-before-enqueue"
    stack = stack_factory("local", **FAST, BACKDROP_TEST_EXIT_BEFORE_ENQUEUE_FILE=str(marker))
    stack.start_worker(concurrency=2)
    stack.start_api()
    photo = rgba_photo(300, size=(120, 160))
    headers = {"Idempotency-Key": "order-300"}

    marker.touch()
    with pytest.raises(OSError):  # the connection dies with the process
        stack.submit(photo, headers=headers, background="red")
    assert not marker.exists()
    (crashed,) = pending_ids(stack)
    assert record(stack, crashed).status.value == "queued"
    assert crashed not in jobs_in_broker(stack.redis)  # a record, and no message

    wait_until(lambda: _answers(stack), DEADLINE, "gunicorn to replace its worker")
    again = stack.submit(photo, headers=headers, background="red")
    assert again.status == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == crashed
    assert pending_ids(stack) == {crashed}  # the retry made no second job

    marker.touch()  # the same crash without an Idempotency-Key: the record alone is repaired
    with pytest.raises(OSError):
        stack.submit(rgba_photo(301, size=(120, 160)), background="red")
    (orphan,) = pending_ids(stack) - {crashed}
    wait_until(lambda: _answers(stack), DEADLINE, "gunicorn to replace its worker")

    # A batch whose records were all written by a request killed before their messages: its client
    # retries with its key; while the dead request's hold on the key lasts that is a 409, after it
    # the batch the dead request wrote, whose messages the reconciler sends.
    photos = [("images", f"{seed}.png", rgba_photo(seed, size=(120, 160))) for seed in (310, 311)]
    body, content_type = encode_multipart([("background", "red")], photos)
    batch_headers = {"Content-Type": content_type, "Idempotency-Key": "batch-310"}
    marker.touch()
    with pytest.raises(OSError):
        stack.request("POST", "/v1/batches", body, batch_headers)
    batch_jobs = pending_ids(stack) - {crashed, orphan}
    assert len(batch_jobs) == 2 and not batch_jobs & jobs_in_broker(stack.redis)
    wait_until(lambda: _answers(stack), DEADLINE, "gunicorn to replace its worker")
    busy = stack.request("POST", "/v1/batches", body, batch_headers)
    assert busy.status == 409 and busy.json()["error"]["code"] == "idempotency_key_in_use"
    (hold,) = stack.redis.scan_iter(keyspace.IDEMPOTENCY_WRITER.format(owner="*", key="batch-310"))
    stack.redis.pexpire(hold, 1)  # what WRITER_LEASE_SECONDS without a sign of life comes to
    again = stack.request("POST", "/v1/batches", body, batch_headers)
    assert again.status == 202 and again.headers["idempotent-replayed"] == "true"
    assert {job["id"] for job in again.json()["jobs"]} == batch_jobs

    wait_all(stack, [crashed, orphan, *batch_jobs])
    assert pending_ids(stack) == set()


def _answers(stack: Stack) -> bool:
    try:
        return http("GET", f"{stack.api_url}/healthz").status == 200
    except OSError:
        return False


# --- 4. a job that kills its worker at every delivery ----------------------------------------------------


def test_a_job_that_kills_its_worker_fails_worker_lost_after_its_deliveries(
    stack_factory: Callable[..., Stack], silent_server: SilentServer
) -> None:
    deliveries = 2
    stack = stack_factory(
        "local",
        **FAST,
        BACKDROP_MAX_DELIVERIES=str(deliveries),
        BACKDROP_FETCH_ALLOW_PRIVATE="true",
        BACKDROP_FETCH_TIMEOUT_SECONDS="120",
    )
    worker = stack.start_worker(concurrency=2)
    stack.start_api()
    body, content_type = multipart({"image_url": f"http://127.0.0.1:{silent_server.port}/photo.png"}, {})
    response = stack.request("POST", "/v1/jobs", body, {"Content-Type": content_type})
    assert response.status == 202, response.body
    poison = response.json()["id"]

    for delivery in range(1, deliveries + 1):
        wait_until(lambda n=delivery: len(silent_server.connections) >= n, DEADLINE, f"delivery {delivery}")
        assert record(stack, poison).status.value == "processing"
        assert poison in jobs_in_broker(stack.redis)  # delivered and unacknowledged: not a lost message
        worker.send_signal(signal.SIGKILL)  # what running this job does to its worker
        worker.process.wait(30)
        worker = stack.start_worker(concurrency=2)

    failed = stack.wait_for(poison, timeout=DEADLINE)
    assert failed["status"] == "failed" and failed["error"]["code"] == "worker_lost"
    assert len(silent_server.connections) == deliveries  # never run again after its last delivery
    assert record(stack, poison).deliveries == deliveries
    wait_all(stack, [submit(stack, 400)])  # the worker that refused it is up and working
