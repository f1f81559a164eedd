"""Markers applied by folder: tests/unit -> unit, tests/conformance -> conformance, ..."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from common.jobs import InputInfo, JobStore, ResultInfo, new_job_id
from common.options import JobOptions
from common.storage import LocalStorage, Storage, input_key, result_key
from worker.embedded import free_port, start_redis

pytest_plugins = ["tests.silent_server"]  # its fixture, for every folder

TESTS_DIR = Path(__file__).parent
FOLDER_MARKERS = {
    "unit": pytest.mark.unit,
    "conformance": pytest.mark.conformance,
    "integration": pytest.mark.integration,
    "app": pytest.mark.app,
    "stores": pytest.mark.stores,
    "cuda": pytest.mark.cuda,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(item.fspath).relative_to(TESTS_DIR).parts[0]
        marker = FOLDER_MARKERS.get(folder)
        if marker is not None:
            item.add_marker(marker)


REPO_ROOT = TESTS_DIR.parent
MODNET_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "modnet"


@pytest.fixture(scope="session")
def modnet_fixtures() -> Path:
    """The official MODNet fixtures beside the repository; skipped in a plain clone, required in CI."""
    if not (MODNET_FIXTURES / "random_weights.ckpt").is_file():
        reason = f"the MODNet reference fixtures are not present at {MODNET_FIXTURES}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (they are required when CI=true)")
        pytest.skip(reason)
    return MODNET_FIXTURES


FACE_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "faces"
FACE_FILES = ("test1.jpg", "test2.jpg", "test2.cutout.png", "test4.jpg")


@pytest.fixture(scope="session")
def face_fixtures() -> Path:
    """The portrait fixtures beside the repository; skipped in a plain clone, required in CI."""
    missing = [name for name in FACE_FILES if not (FACE_FIXTURES / name).is_file()]
    if missing:
        reason = f"the face fixtures {missing} are not present at {FACE_FIXTURES}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (they are required when CI=true)")
        pytest.skip(reason)
    return FACE_FIXTURES


@pytest.fixture(scope="session")
def official_format_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MODNet checkpoint with seeded random weights, written the way the official file is."""
    import torch

    from worker.checkpoint import save_official_format
    from worker.modnet import MODNet

    torch.manual_seed(0)
    model = MODNet()
    # Give the BatchNorms non-trivial statistics so a wrong loader cannot pass by accident.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "modnet_photographic_portrait_matting.ckpt"
    save_official_format(model, path)
    return path


REDIS_DATABASES = 256  # each stack, store test and in-process app gets a database of its own
_next_database = itertools.count(1)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for the session ("redis://127.0.0.1:PORT"); tests use ``redis_database``."""
    root = tmp_path_factory.mktemp("redis")
    port = free_port()
    process = start_redis(root / "data", port, persist=False, log_path=root / "redis.log", databases=REDIS_DATABASES)
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture(scope="session")
def allocate_database(redis_server: str) -> Iterator[Callable[[], str]]:
    """Hands out the URL of an empty database of the session's Redis, a new one at each call."""

    def allocate() -> str:
        number = next(_next_database)
        if number >= REDIS_DATABASES:
            pytest.fail(f"more than {REDIS_DATABASES - 1} Redis databases asked for; raise REDIS_DATABASES")
        url = f"{redis_server}/{number}"
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()
        return url

    yield allocate


@pytest.fixture
def redis_url(allocate_database: Callable[[], str]) -> str:
    """An empty Redis database for this test."""
    return allocate_database()


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Callable[[object, str], list[tuple[object, ...]]]:
    """``recorded(owner, name)`` wraps ``owner.name`` for the test: each call still runs, and its
    positional arguments are appended to the list it returns."""

    def wrap(owner: object, name: str) -> list[tuple[object, ...]]:
        calls: list[tuple[object, ...]] = []
        real = getattr(owner, name)

        def recording(*args: object, **kwargs: object) -> object:
            calls.append(args)
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, recording)
        return calls

    return wrap


def local_storage(root: Path) -> LocalStorage:
    """Local storage under ``root / "storage"`` for a store or worker run in the test's own process."""
    return LocalStorage(root / "storage", base_url="http://127.0.0.1", secret=b"k" * 32)


def batch_job(jobs: JobStore, owner: str, batch_id: str) -> str:
    """A queued job of ``batch_id`` (not yet on the batch's list), as a batch request writes it; its id."""
    job_id = new_job_id()
    info = InputInfo(bytes=1, format="PNG", width=1, height=1)
    jobs.create(job_id, input_key(job_id), info, JobOptions(), owner=owner, batch_id=batch_id)
    return job_id


def succeed_with_composite(jobs: JobStore, storage: Storage, job_id: str, data: bytes) -> None:
    """Store ``data`` as the job's JPEG composite and mark the job succeeded with it, as a worker does."""
    key = result_key(job_id, "composite.jpg")
    storage.put(key, data, "image/jpeg")
    jobs.start(job_id)
    result = ResultInfo(key=key, format="jpeg", media_type="image/jpeg", bytes=len(data), width=1, height=1)
    jobs.succeed(job_id, {"composite": result})
