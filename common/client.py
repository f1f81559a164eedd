"""A small client of the Backdrop HTTP API over urllib; it reads batch progress with the public models."""

from __future__ import annotations

import http.client
import json
import mimetypes
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urljoin, urlsplit

from common.batches import BatchCounts
from common.jobs import JobStatus

ImageSource = bytes | str | os.PathLike[str]
OptionValue = str | int | bool | Sequence[str] | None

# Answers worth the same request again after Retry-After: over a limit, a service down, or (409) an
# Idempotency-Key whose first request is still creating its batch.
RETRY_STATUSES = frozenset({409, 429, 503})
FIRST_POLL_SECONDS = 0.5
MAX_POLL_SECONDS = 5.0
MIN_POLL_SECONDS = 0.05
USER_AGENT = "backdrop-client/0.1"


class ApiError(Exception):
    """An error answer of the API (or of a download host): HTTP status, stable code, message."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass
class _Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _option_text(value: str | int | bool | Sequence[str]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    return ",".join(value)


def _read_image(image: ImageSource, filename: str | None) -> tuple[str, bytes]:
    if isinstance(image, bytes | bytearray | memoryview):
        return filename or "image", bytes(image)
    path = Path(image)
    return filename or path.name, path.read_bytes()


def _quote_header(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


def encode_multipart(fields: Sequence[tuple[str, str]], files: Sequence[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type; ``files`` are (field, filename, bytes)."""
    boundary = f"backdrop-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote_header(name)}"\r\n\r\n'
        parts.append(head.encode() + value.encode() + b"\r\n")
    for name, filename, data in files:
        media_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote_header(name)}"; '
            f'filename="{_quote_header(filename)}"\r\nContent-Type: {media_type}\r\n\r\n'
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _api_error(status: int, headers: Mapping[str, str], body: bytes, reason: str = "") -> ApiError:
    retry_after = parse_retry_after(headers.get("retry-after"))
    try:
        detail = json.loads(body)["error"]
        return ApiError(status, str(detail["code"]), str(detail["message"]), retry_after)
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip()[:500]
        return ApiError(status, "http_error", text or reason or f"HTTP {status}", retry_after)


def _check_length(headers: Mapping[str, str], received: int) -> None:
    """IncompleteRead when fewer bytes came than the answer's Content-Length said: reading a body in
    pieces (as ``shutil.copyfileobj`` does) ends quietly at a connection cut short, unlike ``read()``."""
    expected = headers.get("content-length")
    if expected is not None and expected.isdigit() and received < int(expected):
        raise http.client.IncompleteRead(b"", int(expected) - received)


class BackdropClient:
    """Jobs and batches of a Backdrop server. The API key is only ever sent to the server's own origin."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        max_retry_wait: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self._opener = urllib.request.build_opener()
        self._sleep: Callable[[float], None] = time.sleep
        self._clock: Callable[[], float] = time.monotonic

    # --- transport ----------------------------------------------------------------------------

    def _url(self, path: str, query: Mapping[str, object] | None = None) -> str:
        url = urljoin(self.base_url + "/", path.lstrip("/")) if not urlsplit(path).scheme else path
        return f"{url}?{urlencode(query)}" if query else url

    def _request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        sink: BinaryIO | None = None,
    ) -> _Response:
        """One call, retried on 409/429/503 (honouring Retry-After, bounded); other errors raise ApiError.
        A lost connection (refused, reset, timed out) is retried too where sending again is safe: a GET,
        or a request with an ``Idempotency-Key``; elsewhere it is raised, as it may have been carried out."""
        attempt = 0
        resendable = method == "GET" or any(name.lower() == "idempotency-key" for name in headers or {})
        while True:
            request = urllib.request.Request(url, data=body, method=method, headers={"User-Agent": USER_AGENT})
            for name, value in (headers or {}).items():
                request.add_header(name, value)
            if self.api_key and _origin(url) == _origin(self.base_url):
                # Unredirected: urllib would otherwise copy it onto a redirect to another host.
                request.add_unredirected_header("Authorization", f"Bearer {self.api_key}")
            try:
                with self._opener.open(request, timeout=timeout or self.timeout) as response:
                    answer_headers = {name.lower(): value for name, value in response.headers.items()}
                    if sink is None:
                        return _Response(response.status, answer_headers, response.read())
                    sink.seek(0)
                    sink.truncate()
                    shutil.copyfileobj(response, sink)
                    _check_length(answer_headers, sink.tell())
                    return _Response(response.status, answer_headers, b"")
            except urllib.error.HTTPError as exc:
                with exc:
                    error_headers = {name.lower(): value for name, value in (exc.headers or {}).items()}
                    error = _api_error(exc.code, error_headers, exc.read(), str(exc.reason))
                if error.status not in RETRY_STATUSES or attempt >= self.retries:
                    raise error from None
                retry_after = error.retry_after
            except (OSError, http.client.HTTPException):
                # URLError, RemoteDisconnected, a reset or a timeout: no answer came; IncompleteRead: the
                # answer was cut short (a streamed zip whose server lost its storage), and is not taken.
                if not resendable or attempt >= self.retries:
                    raise
                retry_after = None
            attempt += 1
            delay = retry_after if retry_after is not None else 2.0 ** (attempt - 1)
            self._sleep(min(delay, self.max_retry_wait))

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, self._url(path), **kwargs).json()

    @staticmethod
    def _poll_delay(response: _Response, backoff: float) -> tuple[float, float]:
        """The wait before the next poll (Retry-After, else the backoff) and the next backoff."""
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is not None:
            return max(MIN_POLL_SECONDS, retry_after), backoff
        return backoff, min(backoff * 1.5, MAX_POLL_SECONDS)

    # --- jobs ---------------------------------------------------------------------------------

    def submit(
        self,
        image: ImageSource | None = None,
        *,
        image_url: str | None = None,
        filename: str | None = None,
        background_image: ImageSource | None = None,
        idempotency_key: str | None = None,
        wait: int | None = None,
        **options: OptionValue,
    ) -> dict:
        """Create a job from a photo (bytes or a path) or an ``image_url``; the job as answered (202, or 200)."""
        if (image is None) == (image_url is None):
            raise ValueError("give exactly one of: image, image_url")
        fields = [(name, _option_text(value)) for name, value in options.items() if value is not None]
        files = []
        if image is not None:
            files.append(("image", *_read_image(image, filename)))
        else:
            fields.append(("image_url", str(image_url)))
        if background_image is not None:
            files.append(("background_image", *_read_image(background_image, None)))
        body, content_type = encode_multipart(fields, files)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        timeout = None
        if wait is not None:
            headers["Prefer"] = f"wait={int(wait)}"
            timeout = max(self.timeout, wait + 10.0)
        return self._json("POST", "/v1/jobs", body=body, headers=headers, timeout=timeout)

    def _get_job(self, job_id: str) -> _Response:
        return self._request("GET", self._url(f"/v1/jobs/{quote(job_id, safe='')}"))

    def get(self, job_id: str) -> dict:
        """The job: status, and results or error once finished."""
        return self._get_job(job_id).json()

    def wait(self, job_id: str, *, timeout: float = 300.0) -> dict:
        """Poll until the job is succeeded, failed or canceled; TimeoutError after ``timeout`` seconds."""
        deadline = self._clock() + timeout
        backoff = FIRST_POLL_SECONDS
        while True:
            response = self._get_job(job_id)
            job = response.json()
            if job.get("status") in JobStatus.terminal_values():
                return job
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise TimeoutError(f"job {job_id} is still {job.get('status')} after {timeout} s")
            delay, backoff = self._poll_delay(response, backoff)
            self._sleep(min(delay, remaining))

    def cancel(self, job_id: str) -> dict:
        """Cancel a pending job; the job as it is then (a finished job is left as it was)."""
        return self._json("POST", f"/v1/jobs/{quote(job_id, safe='')}/cancel")

    def delete(self, job_id: str) -> None:
        """Delete a job, its upload and its results."""
        self._request("DELETE", self._url(f"/v1/jobs/{quote(job_id, safe='')}"))

    def download(self, url: str) -> bytes:
        """The bytes behind a result URL (absolute, or relative to the server)."""
        return self._request("GET", self._url(url)).body

    # --- batches ------------------------------------------------------------------------------

    def submit_batch(
        self,
        images: Sequence[ImageSource] = (),
        *,
        filenames: Sequence[str] | None = None,
        image_urls: Sequence[str] | None = None,
        keys: Sequence[str] | None = None,
        idempotency_key: str | None = None,
        **options: OptionValue,
    ) -> dict:
        """Create a batch from photos (multipart), or (JSON) from ``image_urls`` and/or ``keys`` of objects
        already in the server's bucket; the options are shared by every job. The batch as answered.
        ``idempotency_key``: the same key and body again (a retry after a lost answer) get the same batch."""
        headers = {"Accept": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if image_urls is not None or keys is not None:
            if images:
                raise ValueError("image_urls and keys cannot be combined with uploaded images")
            payload: dict[str, Any] = {
                "image_urls": list(image_urls or []),
                "keys": list(keys or []),
                "options": {name: value for name, value in options.items() if value is not None},
            }
            headers["Content-Type"] = "application/json"
            return self._json("POST", "/v1/batches", body=json.dumps(payload).encode(), headers=headers)
        if not images:
            raise ValueError("a batch needs at least one image")
        if filenames is not None and len(filenames) != len(images):
            raise ValueError("give one filename per image")
        files = [
            ("images", *_read_image(image, filenames[index] if filenames else None))
            for index, image in enumerate(images)
        ]
        fields = [(name, _option_text(value)) for name, value in options.items() if value is not None]
        body, content_type = encode_multipart(fields, files)
        headers["Content-Type"] = content_type
        return self._json("POST", "/v1/batches", body=body, headers=headers)

    def _get_batch(self, batch_id: str, page: int, page_size: int) -> _Response:
        url = self._url(f"/v1/batches/{quote(batch_id, safe='')}", {"page": page, "page_size": page_size})
        return self._request("GET", url)

    def get_batch(self, batch_id: str, *, page: int = 1, page_size: int = 100) -> dict:
        """The batch with its counts and one page of its jobs, in submission order."""
        return self._get_batch(batch_id, page, page_size).json()

    def iter_batch_jobs(self, batch_id: str, *, page_size: int = 100) -> Iterator[dict]:
        """Every job of the batch, in submission order, following ``next_page``."""
        page: int | None = 1
        while page is not None:
            batch = self.get_batch(batch_id, page=page, page_size=page_size)
            yield from batch.get("jobs", [])
            page = batch.get("next_page")

    def wait_batch(
        self, batch_id: str, *, timeout: float = 3600.0, on_progress: Callable[[dict], None] | None = None
    ) -> dict:
        """Poll until every job of the batch has finished; ``on_progress`` gets each polled batch.

        Returns the completed batch (its first page of jobs); TimeoutError after ``timeout`` seconds.
        """
        deadline = self._clock() + timeout
        backoff = FIRST_POLL_SECONDS
        while True:
            response = self._get_batch(batch_id, 1, 1)
            batch = response.json()
            if on_progress is not None:
                on_progress(batch)
            if batch_finished(batch):
                return self.get_batch(batch_id)
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise TimeoutError(f"batch {batch_id} has not finished after {timeout} s: {batch.get('counts')}")
            delay, backoff = self._poll_delay(response, backoff)
            self._sleep(min(delay, remaining))

    def cancel_batch(self, batch_id: str) -> dict:
        """Cancel every pending job of the batch; the batch as it is then."""
        return self._json("POST", f"/v1/batches/{quote(batch_id, safe='')}/cancel")

    def delete_batch(self, batch_id: str) -> None:
        """Delete a batch with its jobs, their uploads and their results (not the caller's own uploads)."""
        self._request("DELETE", self._url(f"/v1/batches/{quote(batch_id, safe='')}"))

    def download_batch_zip(self, batch_id: str, dest: str | os.PathLike[str]) -> Path:
        """Save the zip of the batch's composites to ``dest`` (a file, or a folder for ``<batch_id>.zip``)."""
        target = Path(dest)
        if target.is_dir():
            target = target / f"{batch_id}.zip"
        target.parent.mkdir(parents=True, exist_ok=True)
        url = self._url(f"/v1/batches/{quote(batch_id, safe='')}/results.zip")
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as sink:
            try:
                self._request("GET", url, headers={"Accept": "application/zip"}, sink=sink)
            except BaseException:
                sink.close()
                Path(sink.name).unlink(missing_ok=True)
                raise
        Path(sink.name).replace(target)
        return target


def batch_finished(batch: Mapping[str, Any]) -> bool:
    """Whether no job of the batch is queued or processing any more."""
    if batch.get("status") == "completed":
        return True
    counts = batch.get("counts")
    return bool(counts) and finished_jobs(batch) >= batch.get("total", 0)


def finished_jobs(batch: Mapping[str, Any]) -> int:
    """How many of a batch's jobs have finished, from its public JSON."""
    return BatchCounts.model_validate(batch.get("counts") or {}).finished
