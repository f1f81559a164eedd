"""The API's Prometheus metrics: requests by route and status, jobs accepted, and the queues' depth.

gunicorn runs the API in several worker processes, each with its own memory. When
``PROMETHEUS_MULTIPROC_DIR`` is set (an empty, writable directory at each start; the API image and
its Kubernetes deployment set it), prometheus_client keeps every process's values in files there and a
scrape of any process sums them all (its multiprocess mode). Unset, each process reports only its
own requests, which is right for one gunicorn worker (``backdrop serve``, the tests) and wrong for
several.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from celery.signals import after_task_publish
from flask import Flask, Response, g, request
from kombu.transport.redis import Channel
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from common.queue import BATCH_QUEUE, INTERACTIVE_QUEUE, PROCESS_JOB

log = logging.getLogger(__name__)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUESTS = Counter(
    "backdrop_api_requests", "HTTP requests answered, by route and status.", ["method", "route", "status"]
)
REQUEST_SECONDS = Histogram(
    "backdrop_api_request_seconds",
    "Time to answer an HTTP request, by route and status.",
    ["method", "route", "status"],
    buckets=REQUEST_BUCKETS,
)
JOBS_ACCEPTED = Counter("backdrop_jobs_accepted", "Jobs enqueued by the API, by queue.", ["queue"])


def _started() -> None:
    g.backdrop_request_started = time.perf_counter()


def _answered(response: Response) -> Response:
    started = g.get("backdrop_request_started")
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    labels = (request.method, route, str(response.status_code))
    REQUESTS.labels(*labels).inc()
    if started is not None:
        REQUEST_SECONDS.labels(*labels).observe(time.perf_counter() - started)
    return response


def _job_enqueued(sender: str | None = None, routing_key: str | None = None, **_: Any) -> None:
    if sender == PROCESS_JOB:
        JOBS_ACCEPTED.labels(routing_key or INTERACTIVE_QUEUE).inc()


def observe_requests(app: Flask) -> None:
    """Count and time every request of ``app`` (register first: the clock starts before any other
    hook), and count the jobs this process enqueues."""
    app.before_request(_started)
    app.after_request(_answered)
    after_task_publish.connect(_job_enqueued, weak=False, dispatch_uid="backdrop-jobs-accepted")


def queue_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps one queue in: one per priority step (the plain name holds messages
    sent without a priority, which is all of ours)."""
    return [queue if step == 0 else f"{queue}{Channel.sep}{step}" for step in Channel.priority_steps]


class QueueDepthCollector(Collector):
    """``backdrop_queue_depth{queue}``: the messages waiting in each queue, read from Redis at scrape time."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("backdrop_queue_depth", "Messages waiting in each queue.", labels=["queue"])
        queues = (INTERACTIVE_QUEUE, BATCH_QUEUE)
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for queue in queues:
                    for name in queue_lists(queue):
                        pipe.llen(name)
                lengths = pipe.execute()
        except redis.RedisError as exc:
            log.warning("queue depth not read: %s", exc)
            return
        per_queue = len(lengths) // len(queues)
        for index, queue in enumerate(queues):
            family.add_metric([queue], sum(lengths[index * per_queue : (index + 1) * per_queue]))
        yield family


class _Forward(Collector):
    """The metrics of another registry (this process's default one), within a scrape's registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()


def scrape_registry(client: redis.Redis) -> CollectorRegistry:
    """What one scrape reports: every gunicorn process's values in multiprocess mode, else this
    process's; and the queues' depth."""
    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get(MULTIPROCESS_ENV)
    if directory:
        MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(QueueDepthCollector(client))
    return registry
