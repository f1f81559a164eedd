"""The API in-process: ``create_app`` with test settings over a real Redis and local storage, no Celery
worker (messages wait in Redis), driven by Flask's test client."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from api.app import create_app
from common.api_keys import ApiKeyStore
from common.settings import Settings


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings(redis_url=redis_url, storage="local", data_dir=tmp_path / "data", auth="required")


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["backdrop"].redis.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def new_token(settings: Settings, name: str = "tests") -> str:
    """A new API key in the settings' Redis."""
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        return ApiKeyStore(client).create(name).token
    finally:
        client.close()


@pytest.fixture
def token(settings: Settings) -> str:
    return new_token(settings)


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def png(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()
