"""Shared services for integration tests, as real processes: S3 (moto), Redis, workers and the API."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import MODNET_FIXTURES
from tests.integration.stack import Stack, stack_environment
from worker.embedded import free_port

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
S3_TEST_ACCESS_KEY = "testing-access-key"
S3_TEST_SECRET_KEY = "testing-secret-key"


def _answers_http(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=1):
            return True
    except urllib.error.HTTPError as exc:
        exc.close()
        return True  # any HTTP status means the server is up
    except OSError:
        return False


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL ("http://127.0.0.1:PORT") of a moto S3 server running for the whole session.

    moto checks no credentials, signatures or presigned-URL expiry; use unique bucket names per test.
    """
    if not MOTO_SERVER.is_file():
        pytest.skip(f"moto_server is not installed beside {sys.executable} (pip install 'moto[server]')")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while not _answers_http(endpoint + "/"):
                if process.poll() is not None:
                    pytest.fail(
                        f"moto_server exited with {process.returncode}:\n{log_path.read_text(errors='replace')}"
                    )
                if time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not answer on {endpoint} within 60 s")
                time.sleep(0.1)
            yield endpoint
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def service_weights(official_format_checkpoint: Path) -> Path:
    """The fixture checkpoint with random official-format weights when present, else our own."""
    fixture = MODNET_FIXTURES / "random_weights.ckpt"
    return fixture if fixture.is_file() else official_format_checkpoint


@pytest.fixture(scope="module")
def stack_factory(
    allocate_database: Callable[[], str],
    s3_server: str,
    service_weights: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Stack]]:
    """Builds service stacks, each with its own Redis database, storage and processes; a module's
    stacks are stopped when the module's tests are done."""
    stacks: list[Stack] = []

    def build(storage: str = "local", **overrides: str) -> Stack:
        root = tmp_path_factory.mktemp(f"stack-{storage}")
        redis_url = allocate_database()
        env = stack_environment(
            redis_url=redis_url,
            storage=storage,
            data_dir=root / "data",
            weights=service_weights,
            s3_endpoint=s3_server,
            bucket=f"stack-{redis_url.rsplit('/', 1)[1]}",
        )
        env.update(overrides)
        stack = Stack(env, root)
        stacks.append(stack)
        return stack

    yield build
    for stack in stacks:
        stack.stop()


@pytest.fixture(scope="module")
def stack_with_worker(stack_factory: Callable[..., Stack]) -> Stack:
    """A module's stack on local storage: one worker and the API, with a key for the helpers."""
    stack = stack_factory("local")
    stack.start_worker()
    stack.start_api()
    return stack
