"""Every engine, built once per session from the fixtures' random weights (builds cost seconds)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from worker.checkpoint import load_modnet
from worker.engines.base import Engine, EngineUnavailable
from worker.engines.selection import ENGINE_NAMES, build_named

# The engines whose packages the worker extra installs: under CI=true a missing one fails.
INSTALLED_BY_THE_PROJECT = frozenset(ENGINE_NAMES)


@pytest.fixture(scope="session")
def build_engine(modnet_fixtures: Path) -> Callable[[str], Engine]:
    """``build_engine(name)``: that engine on the CPU, fp32, 2 threads; skipped when its package is missing."""
    built: dict[str, Engine | str] = {}
    model = load_modnet(modnet_fixtures / "random_weights.ckpt")

    def build(name: str) -> Engine:
        if name not in built:
            try:
                built[name] = build_named(name, model, torch.device("cpu"), threads=2)
            except EngineUnavailable as exc:
                built[name] = str(exc)
        engine = built[name]
        if isinstance(engine, str):
            if os.environ.get("CI", "").lower() == "true" and name in INSTALLED_BY_THE_PROJECT:
                pytest.fail(f"the {name} engine is required when CI=true: {engine}")
            pytest.skip(f"the {name} engine is unavailable: {engine}")
        return engine

    return build


@pytest.fixture(params=ENGINE_NAMES)
def engine(request: pytest.FixtureRequest, build_engine: Callable[[str], Engine]) -> Engine:
    return build_engine(request.param)
