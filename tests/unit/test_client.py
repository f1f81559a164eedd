"""The HTTP client and the CLI's remote mode, against small fake servers running in threads."""

from __future__ import annotations

import http.client
import io
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner
from PIL import Image
from werkzeug.formparser import parse_form_data

from common.client import ApiError, BackdropClient
from tests.conftest import REPO_ROOT
from worker.cli.remote import replace_remote
from worker.cli.replace import replace

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Seen:
    """One request as the fake server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes

    def form(self) -> tuple[dict[str, list[str]], dict[str, list[tuple[str, bytes]]]]:
        """The multipart body as Werkzeug (the API's parser) reads it: fields, and (filename, bytes) per file field."""
        environ = {
            "REQUEST_METHOD": "POST",
            "CONTENT_TYPE": self.headers["content-type"],
            "CONTENT_LENGTH": str(len(self.body)),
            "wsgi.input": io.BytesIO(self.body),
        }
        _, form, files = parse_form_data(environ)
        uploads: dict[str, list[tuple[str, bytes]]] = {}
        for name, storage in files.items(multi=True):
            try:
                uploads.setdefault(name, []).append((storage.filename or "", storage.read()))
            finally:
                storage.stream.close()
        return form.to_dict(flat=False), uploads


Answer = tuple[int, dict[str, str], bytes]


def json_answer(status: int, body: object, **headers: str) -> Answer:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()


def error_answer(status: int, code: str, message: str, **headers: str) -> Answer:
    return json_answer(status, {"error": {"code": code, "message": message}}, **headers)


DROP: Answer = (0, {}, b"")  # a route's answer: close the connection without one
CUT_SHORT = "X-Fake-Cut-Short"  # a header of a route's answer: promise twice the body, then close


def cut_answer(status: int, payload: bytes, content_type: str = "application/json") -> Answer:
    return status, {"Content-Type": content_type, CUT_SHORT: "1"}, payload


class FakeServer:
    """An HTTP server in a thread; ``route`` answers each request, ``seen`` records them."""

    def __init__(self, host_name: str = "127.0.0.1") -> None:
        self.seen: list[Seen] = []
        self.failures: list[BaseException] = []
        self.route: Callable[[Seen], Answer] = lambda seen: error_answer(404, "not_found", seen.path)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen = Seen(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {name.lower(): value for name, value in self.headers.items()},
                    body,
                )
                server.seen.append(seen)
                try:
                    status, headers, payload = server.route(seen)
                except Exception as exc:  # surfaced by the fixture
                    server.failures.append(exc)
                    status, headers, payload = 500, {}, b"fake server error"
                if status == DROP[0]:  # the connection closed with no answer
                    self.close_connection = True
                    return
                cut = headers.pop(CUT_SHORT, None) is not None
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(2 * len(payload) if cut else len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                if cut:
                    self.close_connection = True

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://{host_name}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def api() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()
    assert not server.failures, server.failures


@pytest.fixture
def other_host() -> Iterator[FakeServer]:
    server = FakeServer("localhost")
    yield server
    server.close()
    assert not server.failures, server.failures


def job(job_id: str, status: str, **extra: object) -> dict:
    return {"id": job_id, "status": status, "results": None, "error": None, **extra}


class FakeTime:
    """A clock that advances only when the client sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def install(self, client: BackdropClient) -> BackdropClient:
        client._sleep = self.sleep
        client._clock = lambda: self.now
        return client


# --- jobs ---------------------------------------------------------------------------------------


def test_submit_sends_a_multipart_form(api: FakeServer, tmp_path: Path) -> None:
    api.route = lambda seen: json_answer(202, job("j1", "queued"), Location="/v1/jobs/j1")
    client = BackdropClient(api.url + "/", "secret")
    image = PNG_MAGIC + bytes(range(256)) * 4 + b"\r\n--not-a-boundary\r\n"
    answer = client.submit(
        image,
        filename="me.png",
        background="#ff0000",
        quality=80,
        decontaminate=False,
        outputs=["composite", "matte"],
        format=None,
        idempotency_key="key-1",
        wait=5,
    )
    assert answer == job("j1", "queued")
    (seen,) = api.seen
    assert (seen.method, seen.path) == ("POST", "/v1/jobs")
    assert seen.headers["authorization"] == "Bearer secret"
    assert seen.headers["idempotency-key"] == "key-1"
    assert seen.headers["prefer"] == "wait=5"
    fields, files = seen.form()
    assert fields == {
        "background": ["#ff0000"],
        "quality": ["80"],
        "decontaminate": ["false"],
        "outputs": ["composite,matte"],
    }
    assert files == {"image": [("me.png", image)]}

    photo = tmp_path / "portrait photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff" + bytes(100))
    client.submit(str(photo), decontaminate=True)
    client.submit(image_url="https://example.com/a.jpg")
    fields, files = api.seen[1].form()
    assert fields == {"decontaminate": ["true"]}
    assert files == {"image": [("portrait photo.jpg", photo.read_bytes())]}
    fields, files = api.seen[2].form()
    assert fields == {"image_url": ["https://example.com/a.jpg"]}
    assert files == {}
    assert "prefer" not in api.seen[1].headers and "idempotency-key" not in api.seen[1].headers


def test_submit_needs_exactly_one_image(api: FakeServer) -> None:
    client = BackdropClient(api.url)
    with pytest.raises(ValueError):
        client.submit()
    with pytest.raises(ValueError):
        client.submit(b"x", image_url="https://example.com/a.jpg")
    assert api.seen == []


def test_the_api_key_goes_to_the_api_host_only(api: FakeServer, other_host: FakeServer) -> None:
    other_host.route = lambda seen: (200, {"Content-Type": "image/jpeg"}, b"from-the-bucket")
    api.route = lambda seen: (
        (302, {"Location": f"{other_host.url}/redirected"}, b"")
        if seen.path == "/v1/redirect"
        else (200, {"Content-Type": "image/jpeg"}, b"from-the-api")
    )
    client = BackdropClient(api.url, "secret")

    assert client.download(f"{other_host.url}/bucket/result.jpg?X-Amz-Signature=abc") == b"from-the-bucket"
    assert client.download(f"{api.url}/v1/files/jobs/j1/composite.jpg?signature=abc") == b"from-the-api"
    assert client.download("/v1/files/jobs/j1/matte.png") == b"from-the-api"
    assert client.download(f"{api.url}/v1/redirect") == b"from-the-bucket"

    assert [s.headers.get("authorization") for s in api.seen] == ["Bearer secret"] * 3
    assert [s.path for s in other_host.seen] == ["/bucket/result.jpg", "/redirected"]
    assert [s.headers.get("authorization") for s in other_host.seen] == [None, None]


def test_retry_after_is_honoured_on_503(api: FakeServer) -> None:
    answers = iter(
        [
            error_answer(503, "queue_unavailable", "try again later", **{"Retry-After": "2"}),
            error_answer(503, "queue_unavailable", "try again later", **{"Retry-After": "3"}),
            json_answer(200, job("j1", "succeeded")),
        ]
    )
    api.route = lambda seen: next(answers)
    clock = FakeTime()
    client = clock.install(BackdropClient(api.url, "secret"))
    assert client.get("j1")["status"] == "succeeded"
    assert len(api.seen) == 3
    assert clock.sleeps == [2.0, 3.0]


def test_retries_are_bounded_then_the_error_is_raised(api: FakeServer) -> None:
    api.route = lambda seen: error_answer(429, "too_many_pending_jobs", "slow down", **{"Retry-After": "100"})
    clock = FakeTime()
    client = clock.install(BackdropClient(api.url, retries=2, max_retry_wait=30))
    with pytest.raises(ApiError) as raised:
        client.submit(b"image")
    assert len(api.seen) == 3
    assert clock.sleeps == [30, 30]
    assert (raised.value.status, raised.value.code, raised.value.retry_after) == (429, "too_many_pending_jobs", 100.0)


def test_api_errors_carry_the_json_error(api: FakeServer) -> None:
    api.route = lambda seen: (
        error_answer(404, "not_found", "no job 'nope'")
        if seen.path.endswith("nope")
        else (502, {"Content-Type": "text/plain"}, b"Bad Gateway")
    )
    client = FakeTime().install(BackdropClient(api.url))
    with pytest.raises(ApiError) as raised:
        client.get("nope")
    error = raised.value
    assert (error.status, error.code, error.message, error.retry_after) == (404, "not_found", "no job 'nope'", None)
    assert len(api.seen) == 1  # a 404 is not retried
    with pytest.raises(ApiError) as raised:
        client.cancel("other")
    assert (raised.value.status, raised.value.code, raised.value.message) == (502, "http_error", "Bad Gateway")


def test_wait_polls_until_terminal_honouring_retry_after(api: FakeServer) -> None:
    statuses = iter(["queued", "processing", "processing", "succeeded"])

    def answer(seen: Seen) -> Answer:
        status = next(statuses)
        # The server says when to come back only for the first two polls; then the client backs off.
        headers = {"Retry-After": "1"} if len(api.seen) <= 2 else {}
        return json_answer(200, job("j1", status), **headers)

    api.route = answer
    clock = FakeTime()
    client = clock.install(BackdropClient(api.url))
    assert client.wait("j1")["status"] == "succeeded"
    assert len(api.seen) == 4
    assert clock.sleeps == [1.0, 1.0, 0.5]


def test_wait_times_out_when_never_terminal(api: FakeServer) -> None:
    api.route = lambda seen: json_answer(200, job("j1", "processing"))
    clock = FakeTime()
    client = clock.install(BackdropClient(api.url))
    with pytest.raises(TimeoutError, match="j1"):
        client.wait("j1", timeout=3)
    assert clock.sleeps == [0.5, 0.75, 1.125, 0.625]  # x1.5 backoff, the last one cut to the deadline
    assert len(api.seen) == 5

    api.route = lambda seen: json_answer(200, job("j1", "queued"), **{"Retry-After": "0"})
    with pytest.raises(TimeoutError):
        BackdropClient(api.url).wait("j1", timeout=0.2)  # the real clock
    assert len(api.seen) > 6


def test_delete_and_cancel(api: FakeServer) -> None:
    api.route = lambda seen: (204, {}, b"") if seen.method == "DELETE" else json_answer(200, job("j/1", "canceled"))
    client = BackdropClient(api.url, "secret")
    assert client.cancel("j/1")["status"] == "canceled"
    assert client.delete("j/1") is None
    assert client.delete_batch("b/1") is None
    assert [(s.method, s.path) for s in api.seen] == [
        ("POST", "/v1/jobs/j%2F1/cancel"),
        ("DELETE", "/v1/jobs/j%2F1"),
        ("DELETE", "/v1/batches/b%2F1"),
    ]


# --- batches ------------------------------------------------------------------------------------


def paged_batch(
    batch_id: str, jobs: list[dict], seen: Seen, headers: dict[str, str] | None = None, **fields: object
) -> Answer:
    page = int(seen.query["page"][0])
    size = int(seen.query["page_size"][0])
    chunk = jobs[(page - 1) * size : page * size]
    next_page = page + 1 if page * size < len(jobs) else None
    body = {"id": batch_id, "total": len(jobs), "jobs": chunk, "next_page": next_page, **fields}
    return json_answer(200, body, **(headers or {}))


def test_iter_batch_jobs_follows_next_page(api: FakeServer) -> None:
    jobs = [job(f"j{i}", "succeeded") for i in range(5)]
    api.route = lambda seen: paged_batch("b1", jobs, seen, status="completed")
    client = BackdropClient(api.url, "secret")
    assert [j["id"] for j in client.iter_batch_jobs("b1", page_size=2)] == ["j0", "j1", "j2", "j3", "j4"]
    assert [(s.path, s.query["page"], s.query["page_size"]) for s in api.seen] == [
        ("/v1/batches/b1", ["1"], ["2"]),
        ("/v1/batches/b1", ["2"], ["2"]),
        ("/v1/batches/b1", ["3"], ["2"]),
    ]


def test_submit_batch_and_wait_batch(api: FakeServer, tmp_path: Path) -> None:
    polls = iter(
        [
            {"status": "pending", "counts": {"queued": 2, "processing": 1, "succeeded": 0, "failed": 0}},
            {"status": "pending", "counts": {"queued": 0, "processing": 1, "succeeded": 1, "failed": 1}},
            {"status": "completed", "counts": {"queued": 0, "processing": 0, "succeeded": 2, "failed": 1}},
        ]
    )
    jobs = [job("j0", "succeeded"), job("j1", "failed"), job("j2", "succeeded")]

    def answer(seen: Seen) -> Answer:
        if seen.method == "POST":
            return json_answer(202, {"id": "b1", "status": "pending", "total": 3, "jobs": [], "next_page": None})
        if seen.query["page_size"] == ["1"]:
            return paged_batch("b1", jobs, seen, **next(polls))
        return paged_batch("b1", jobs, seen, status="completed")

    api.route = answer
    second = tmp_path / "second.jpg"
    second.write_bytes(b"two")
    clock = FakeTime()
    client = clock.install(BackdropClient(api.url, "secret"))
    batch = client.submit_batch([b"one", second, b"three"], filenames=["a.png", "b.jpg", "c.png"], background="white")
    assert batch["id"] == "b1"
    fields, files = api.seen[0].form()
    assert fields == {"background": ["white"]}
    assert files == {"images": [("a.png", b"one"), ("b.jpg", b"two"), ("c.png", b"three")]}

    progress: list[dict] = []
    done = client.wait_batch("b1", on_progress=progress.append)
    assert [p["counts"]["succeeded"] for p in progress] == [0, 1, 2]
    assert done["status"] == "completed" and [j["id"] for j in done["jobs"]] == ["j0", "j1", "j2"]
    assert clock.sleeps == [0.5, 0.75]


def test_submit_batch_of_urls_is_json(api: FakeServer) -> None:
    api.route = lambda seen: json_answer(202, {"id": "b2", "status": "pending"})
    client = BackdropClient(api.url, "secret")
    client.submit_batch(image_urls=["https://example.com/a.jpg"], keys=["a"], background="red", decontaminate=False)
    (seen,) = api.seen
    assert seen.headers["content-type"] == "application/json" and "idempotency-key" not in seen.headers
    assert json.loads(seen.body) == {
        "image_urls": ["https://example.com/a.jpg"],
        "keys": ["a"],
        "options": {"background": "red", "decontaminate": False},
    }


def test_a_batch_key_in_use_is_retried_with_the_same_key(api: FakeServer) -> None:
    answers = iter(
        [
            error_answer(409, "idempotency_key_in_use", "still creating its batch", **{"Retry-After": "5"}),
            json_answer(202, {"id": "b3", "status": "pending"}, **{"Idempotent-Replayed": "true"}),
        ]
    )
    api.route = lambda seen: next(answers)
    clock = FakeTime()
    client = clock.install(BackdropClient(api.url, "secret"))
    assert client.submit_batch([b"one"], idempotency_key="batch-7")["id"] == "b3"
    assert [seen.headers["idempotency-key"] for seen in api.seen] == ["batch-7", "batch-7"]
    assert api.seen[0].body == api.seen[1].body
    assert clock.sleeps == [5.0]


def test_a_dropped_connection_is_retried_only_where_sending_again_is_safe(api: FakeServer) -> None:
    answers = iter(
        [DROP, json_answer(202, {"id": "b4", "status": "pending"}), DROP, json_answer(200, job("j1", "queued"))]
    )
    api.route = lambda seen: next(answers)
    clock = FakeTime()
    client = clock.install(BackdropClient(api.url, "secret"))
    assert client.submit_batch(image_urls=["https://example.com/a.jpg"], idempotency_key="batch-8")["id"] == "b4"
    assert [seen.headers["idempotency-key"] for seen in api.seen] == ["batch-8", "batch-8"]
    assert api.seen[0].body == api.seen[1].body
    assert client.get("j1")["status"] == "queued" and len(api.seen) == 4
    assert clock.sleeps == [1.0, 1.0]

    # Without a key the server may have created the batch before the connection dropped: not resent.
    api.route = lambda seen: DROP
    with pytest.raises(OSError):
        client.submit_batch(image_urls=["https://example.com/a.jpg"])
    assert len(api.seen) == 5
    # Retries stay bounded.
    with pytest.raises(OSError):
        client.get("j1")
    assert len(api.seen) == 5 + 1 + client.retries


def test_an_answer_cut_short_is_asked_for_again_only_where_that_is_safe(api: FakeServer, tmp_path: Path) -> None:
    answers = iter(
        [cut_answer(200, b"PK\x03\x04half", "application/zip"), (200, {"Content-Type": "application/zip"}, b"PK whole")]
    )
    api.route = lambda seen: next(answers)
    clock = FakeTime()
    client = clock.install(BackdropClient(api.url, "secret"))
    saved = client.download_batch_zip("b1", tmp_path)
    assert saved.read_bytes() == b"PK whole"  # written afresh by the second attempt, not appended to
    assert len(api.seen) == 2 and clock.sleeps == [1.0]
    assert [path.name for path in tmp_path.iterdir()] == ["b1.zip"]

    # A batch sent without a key may have been created: its answer cut short is not sent for again.
    api.route = lambda seen: cut_answer(202, json.dumps({"id": "b5", "status": "pending"}).encode())
    with pytest.raises(http.client.IncompleteRead):
        client.submit_batch(image_urls=["https://example.com/a.jpg"])
    assert len(api.seen) == 3


def test_download_batch_zip_and_cancel_batch(api: FakeServer, tmp_path: Path) -> None:
    api.route = lambda seen: (
        (200, {"Content-Type": "application/zip"}, b"PK\x03\x04zip-bytes")
        if seen.path.endswith("results.zip")
        else json_answer(200, {"id": "b1", "status": "completed"})
    )
    client = BackdropClient(api.url, "secret")
    assert client.cancel_batch("b1")["status"] == "completed"
    saved = client.download_batch_zip("b1", tmp_path)
    assert saved == tmp_path / "b1.zip" and saved.read_bytes() == b"PK\x03\x04zip-bytes"
    named = client.download_batch_zip("b1", tmp_path / "sub" / "all.zip")
    assert named.read_bytes() == b"PK\x03\x04zip-bytes"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["all.zip", "b1.zip", "sub"]  # no temporary leftovers
    assert [(s.method, s.path) for s in api.seen] == [
        ("POST", "/v1/batches/b1/cancel"),
        ("GET", "/v1/batches/b1/results.zip"),
        ("GET", "/v1/batches/b1/results.zip"),
    ]


# --- the CLI's remote mode ----------------------------------------------------------------------


def small_png(size: tuple[int, int], shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (shade, shade, shade)).save(buffer, "PNG")
    return buffer.getvalue()


class FakeBatchServer:
    """Enough of the batch API for ``backdrop replace --server``: uploads named trunc* fail, the others succeed."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.jobs: list[dict] = []
        self.polls = 0
        self.uploads: list[tuple[str, bytes]] = []
        self.deleted: Answer = (204, {}, b"")  # the answer to the batch's DELETE
        server.route = self.answer

    def answer(self, seen: Seen) -> Answer:
        if seen.method == "POST" and seen.path == "/v1/batches":
            fields, files = seen.form()
            outputs = fields.get("outputs", ["composite"])[0].split(",")
            self.uploads = files["images"]
            for index, (filename, _) in enumerate(self.uploads):
                if filename.startswith("trunc"):
                    error = {"code": "corrupt_image", "message": "the image data cannot be decoded"}
                    self.jobs.append(job(f"j{index}", "failed", error=error))
                else:
                    results = {
                        name: {"url": f"{self.server.url}/files/{index}/{name}", "format": fmt}
                        for name, fmt in (("composite", "jpeg"), ("cutout", "png"), ("matte", "png"))
                        if name in outputs
                    }
                    self.jobs.append(job(f"j{index}", "succeeded", results=results))
            return json_answer(202, {"id": "b1", "status": "pending", "total": len(self.jobs), "jobs": []})
        if seen.method == "DELETE" and seen.path == "/v1/batches/b1":
            return self.deleted
        if seen.path == "/v1/batches/b1":
            self.polls += 1
            finished = len(self.jobs) if self.polls > 1 else 1
            counts = {"queued": len(self.jobs) - finished, "processing": 0, "succeeded": finished, "failed": 0}
            status = "completed" if finished == len(self.jobs) else "pending"
            return paged_batch("b1", self.jobs, seen, {"Retry-After": "0"}, status=status, counts=counts)
        if seen.path.startswith("/files/"):
            return 200, {}, f"result {seen.path}".encode()
        return error_answer(404, "not_found", seen.path)


def test_cli_remote_mode_writes_results_and_names_failures(api: FakeServer, tmp_path: Path) -> None:
    fake = FakeBatchServer(api)
    photos = tmp_path / "in"
    (photos / "nested").mkdir(parents=True)
    a, b, truncated = small_png((40, 30), 10), small_png((30, 40), 20), small_png((50, 50), 30)[:80]
    (photos / "a.png").write_bytes(a)
    (photos / "nested" / "b.png").write_bytes(b)
    (photos / "nested" / "bad.jpg").write_text("not a photo")
    (photos / "nested" / "trunc.png").write_bytes(truncated)
    (photos / "notes.txt").write_text("not picked up from a folder")
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "out"

    result = CliRunner().invoke(
        replace,
        [str(photos), str(missing), "--server", api.url, "-b", "red", "--matte", "-o", str(out)],
        env={"BACKDROP_API_KEY": "from-env"},
    )
    assert result.exit_code == 1, result.output
    assert f"2 of 5 photos done, written to {out}" in result.stderr
    assert f"{photos / 'nested' / 'bad.jpg'}: unsupported_image: not an image" in result.stderr
    assert f"{photos / 'nested' / 'trunc.png'}: corrupt_image: the image data cannot be decoded" in result.stderr
    assert f"{missing}: unreadable" in result.stderr

    produced = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert produced == ["a.jpg", "a.matte.png", "nested/b.jpg", "nested/b.matte.png"]
    assert (out / "nested" / "b.jpg").read_bytes() == b"result /files/1/composite"
    assert (out / "a.matte.png").read_bytes() == b"result /files/0/matte"
    # One batch in collect order, without the file that is no image; the shared options; the key from the
    # environment goes to the API only.
    assert fake.uploads == [("a.png", a), ("b.png", b), ("trunc.png", truncated)]
    posts = [s for s in api.seen if s.method == "POST"]
    assert len(posts) == 1
    assert posts[0].form()[0] == {"background": ["red"], "quality": ["92"], "outputs": ["composite,matte"]}
    assert {s.headers.get("authorization") for s in api.seen} == {"Bearer from-env"}
    assert len(posts[0].headers["idempotency-key"]) == 32  # its own key: the batch may be sent again safely
    # Every result downloaded, the batch is deleted from the server: its photos do not wait there.
    assert (api.seen[-1].method, api.seen[-1].path) == ("DELETE", "/v1/batches/b1")
    assert not any(s.method == "DELETE" for s in api.seen[:-1])


@pytest.mark.parametrize("keep", [True, False])
def test_cli_remote_mode_keeps_the_batch_when_asked_or_when_it_cannot_be_deleted(
    api: FakeServer, tmp_path: Path, keep: bool
) -> None:
    fake = FakeBatchServer(api)
    fake.deleted = error_answer(500, "internal_error", "something went wrong")
    photo = tmp_path / "p.png"
    photo.write_bytes(small_png((40, 40), 0))
    argv = [str(photo), "--server", api.url, "-o", str(tmp_path / "out")] + (["--keep-on-server"] if keep else [])
    result = CliRunner().invoke(replace, argv)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "p.jpg").read_bytes() == b"result /files/0/composite"
    deletes = [s.path for s in api.seen if s.method == "DELETE"]
    if keep:
        assert deletes == [] and "warning" not in result.stderr
    else:  # asked, then left to expire there, and said so; the photos were written all the same
        assert deletes == ["/v1/batches/b1"]
        assert "warning: batch b1 is left on the server, to expire there (internal_error:" in result.stderr


@pytest.mark.parametrize("keep", [True, False])
def test_an_interrupted_remote_run_deletes_its_batch_or_cancels_a_kept_one(
    api: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: bool
) -> None:
    FakeBatchServer(api)
    api.route = lambda seen, answer=api.route: (
        json_answer(200, {"id": "b1", "status": "completed"}) if seen.path.endswith("/cancel") else answer(seen)
    )

    def interrupted(*args: object, **kwargs: object) -> dict:
        raise KeyboardInterrupt  # Ctrl-C while the batch runs

    monkeypatch.setattr(BackdropClient, "wait_batch", interrupted)
    photo = tmp_path / "p.png"
    photo.write_bytes(small_png((40, 40), 0))
    with pytest.raises(KeyboardInterrupt):
        replace_remote((photo,), server=api.url, api_key="k", values={}, output=tmp_path / "out", keep=keep)
    after_submit = [(s.method, s.path) for s in api.seen][1:]
    assert after_submit == ([("POST", "/v1/batches/b1/cancel")] if keep else [("DELETE", "/v1/batches/b1")])


def test_cli_remote_mode_checks_options_before_sending(api: FakeServer, tmp_path: Path) -> None:
    photo = tmp_path / "p.png"
    photo.write_bytes(small_png((40, 40), 0))
    result = CliRunner().invoke(replace, [str(photo), "--server", api.url, "-b", "purple"])
    assert result.exit_code == 2
    assert "purple" in result.stderr
    result = CliRunner().invoke(replace, [str(photo), "--server", api.url, "-b", str(photo)])
    assert result.exit_code == 2
    assert "background image file cannot be sent with --server" in result.stderr
    assert api.seen == []


def test_cli_remote_mode_reports_a_refused_batch(api: FakeServer, tmp_path: Path) -> None:
    api.route = lambda seen: error_answer(401, "unauthorized", "a valid API key is required")
    photo = tmp_path / "p.png"
    photo.write_bytes(small_png((40, 40), 0))
    result = CliRunner().invoke(replace, [str(photo), "--server", api.url, "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "401 unauthorized: a valid API key is required" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_remote_mode_does_not_import_torch() -> None:
    code = "import sys\nimport worker.cli.remote\nprint('torch' in sys.modules, 'flask' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split() == ["False", "False"]
