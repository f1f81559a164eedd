"""The services' logs: JSON lines (or text) at one level, each line tagged with the job and request it is about.

The API binds a request id per request, the worker a job id (and the request id that submitted the job)
per task; both live in context variables, which a handler filter copies onto every record. The request
id travels from the API to the worker as a header of the Celery message.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from threading import Lock
from typing import Any

from celery.signals import before_task_publish
from pythonjsonlogger.json import JsonFormatter

from common.settings import Settings

# The Celery message header that carries the submitting request's id to the worker.
REQUEST_ID_HEADER = "backdrop_request_id"
# A request id sent by a client is kept when it is this short and made of these characters.
MAX_REQUEST_ID_LENGTH = 128
_REQUEST_ID_PATTERN = re.compile(rf"[A-Za-z0-9._:/+=-]{{1,{MAX_REQUEST_ID_LENGTH}}}")
_RECORD_ID = re.compile(r"\b[0-9a-f]{32}\b")
_ARGSREPR_ID = re.compile(r"'argsrepr': \"\['([0-9a-f]{32})'")
_REQUEST_ID_IN_MESSAGE = re.compile(rf"'{REQUEST_ID_HEADER}': '([^']+)'")
# The Celery task names whose first argument is a job id (or a batch id, for batch events).
_JOB_TASKS = ("backdrop.process_job", "backdrop.deliver_webhook")

job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("backdrop_job_id", default=None)
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("backdrop_request_id", default=None)

_HANDLER_NAME = "backdrop"


@dataclass(frozen=True)
class TaskContext:
    job_id: str | None
    request_id: str | None


class _RecentTasks:
    """The job of each recent Celery task id, for Celery's own lines about a task (logged outside it)."""

    def __init__(self, size: int = 4096) -> None:
        self._items: OrderedDict[str, TaskContext] = OrderedDict()
        self._size = size
        self._lock = Lock()

    def remember(self, task_id: str, context: TaskContext) -> None:
        with self._lock:
            self._items[task_id] = context
            self._items.move_to_end(task_id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def get(self, task_id: str) -> TaskContext | None:
        with self._lock:
            return self._items.get(task_id)


recent_tasks = _RecentTasks()


def request_id_from(header: str | None) -> str:
    """The request's id: the client's ``X-Request-Id`` when it is a sane token, else a new one."""
    if header and _REQUEST_ID_PATTERN.fullmatch(header):
        return header
    return uuid.uuid4().hex


def _celery_record_context(record: logging.LogRecord) -> TaskContext | None:
    """The job of one of Celery's own lines about a task ("received", "succeeded in ..."), whose
    arguments are a mapping with the task id, and at receipt its name and arguments."""
    args = record.args
    if not isinstance(args, Mapping) or "id" not in args:
        return _celery_message_context(record)
    known = recent_tasks.get(str(args["id"]))
    if known is not None:
        return known
    if args.get("name") in _JOB_TASKS:
        found = _RECORD_ID.search(str(args.get("args", "")))
        if found and "'batch." not in str(args.get("args", "")):
            return TaskContext(found.group(0), None)
    return None


def _celery_message_context(record: logging.LogRecord) -> TaskContext | None:
    """The job of a Celery line that prints a job's whole message (the pool's debug lines)."""
    if not record.name.startswith("celery") or _JOB_TASKS[0] not in str(record.msg) + str(record.args):
        return None
    message = record.getMessage()
    found = _ARGSREPR_ID.search(message)
    if found is None:
        return None
    request = _REQUEST_ID_IN_MESSAGE.search(message)
    return TaskContext(found.group(1), request.group(1) if request else None)


class ContextFilter(logging.Filter):
    """Puts ``job_id`` and ``request_id`` on each record that is about a job or a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        job_id, request_id = job_id_var.get(), request_id_var.get()
        if job_id is None and request_id is None:
            celery_context = _celery_record_context(record)
            if celery_context is not None:
                job_id, request_id = celery_context.job_id, celery_context.request_id
        if job_id is not None and not hasattr(record, "job_id"):
            record.job_id = job_id
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class TextFormatter(logging.Formatter):
    """Plain lines, with the job and request ids appended when the record has them."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = [f"{name}={getattr(record, name)}" for name in ("job_id", "request_id") if hasattr(record, name)]
        return f"{line} [{' '.join(tags)}]" if tags else line


def make_formatter(log_format: str) -> logging.Formatter:
    """One JSON object per line (time, level, logger, message, and any extra fields), or text."""
    if log_format == "text":
        return TextFormatter()
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def configure_logging(settings: Settings, *, also: tuple[str, ...] = ()) -> None:
    """Send the root logger's records to stderr in ``BACKDROP_LOG_FORMAT`` at ``BACKDROP_LOG_LEVEL``,
    with the context filter. Loggers named in ``also`` keep their own handlers, which get the same
    format (gunicorn's). Calling it again replaces what an earlier call set up."""
    formatter = make_formatter(settings.log_format)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in also:
        for own in logging.getLogger(name).handlers:
            own.setFormatter(formatter)
            if not any(isinstance(f, ContextFilter) for f in own.filters):
                own.addFilter(ContextFilter())


def bind(*, job_id: str | None = None, request_id: str | None = None) -> list[contextvars.Token[Any]]:
    """Set the job and/or request id of what follows in this thread; ``unbind`` the tokens after."""
    tokens: list[contextvars.Token[Any]] = []
    if job_id is not None:
        tokens.append(job_id_var.set(job_id))
    if request_id is not None:
        tokens.append(request_id_var.set(request_id))
    return tokens


def unbind(tokens: list[contextvars.Token[Any]]) -> None:
    for token in reversed(tokens):
        token.var.reset(token)


def _send_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = request_id_var.get()
    if request_id is not None and headers is not None:
        headers[REQUEST_ID_HEADER] = request_id


def send_request_ids_with_tasks() -> None:
    """Make every Celery message sent from this process carry the current request id (idempotent)."""
    before_task_publish.connect(_send_request_id, weak=False, dispatch_uid="backdrop-request-id")
