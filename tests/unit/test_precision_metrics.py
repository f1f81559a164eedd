"""The precision self-check's decision and figures in the worker's Prometheus metrics and its log."""

from __future__ import annotations

import logging

import pytest
import torch
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.engines.base import Precision
from worker.engines.calibration import calibration_portraits
from worker.engines.precision_check import check_precision
from worker.engines.selection import EngineChoice
from worker.engines.torch_engine import TorchEngine
from worker.metrics import describe_precision
from worker.modnet import MODNet


def scrape() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of the default registry, as the worker's /metrics serves it, by name and labels."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture(scope="module")
def engines() -> tuple[TorchEngine, TorchEngine]:
    torch.manual_seed(0)
    model = MODNet().eval()
    return TorchEngine(model, torch.device("cpu")), TorchEngine(model, torch.device("cpu"), Precision.BF16)


@pytest.mark.parametrize("tolerance", [1.0, 1e-9])
def test_a_scrape_shows_the_self_checks_figures_and_decision(
    engines: tuple[TorchEngine, TorchEngine], tolerance: float, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="worker.metrics")
    reference, faster = engines
    check = check_precision(reference, faster, calibration_portraits(64, 64)[:2], tolerance)
    chosen = faster if check.passed else reference
    describe_precision(EngineChoice(chosen, "torch: asked for", check, check.summary()), "cpu")

    samples = scrape()
    figures = samples["backdrop_worker_precision_check_delta_alpha"]
    assert figures[(("statistic", "mean"),)] == pytest.approx(check.mean)
    assert figures[(("statistic", "p99"),)] == pytest.approx(check.p99)
    assert figures[(("statistic", "bound"),)] == pytest.approx(tolerance / 2)
    ((labels, value),) = samples["backdrop_worker_precision_info"].items()
    assert value == 1
    expected = "bf16" if check.passed else "fp32"
    verdict = "passed" if check.passed else "failed"
    assert dict(labels) == {
        "precision": expected,
        "engine": "torch",
        "device": "cpu",
        "tried": "bf16",
        "verdict": verdict,
    }
    assert check.passed is (tolerance == 1.0)  # bf16 on random weights moves the matte by far more than 1e-9
    assert any(f"mean |Δα| {check.mean:.3e}" in record.getMessage() for record in caplog.records)


def test_without_a_self_check_the_verdict_says_it_did_not_run(
    engines: tuple[TorchEngine, TorchEngine], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="worker.metrics")
    reference, _ = engines
    describe_precision(EngineChoice(reference, "torch: asked for", None, "fp32: reduced precision off"), "cpu")
    ((labels, _),) = scrape()["backdrop_worker_precision_info"].items()
    assert dict(labels)["verdict"] == "not_run"
    assert dict(labels)["tried"] == "none"
    assert any("reduced precision off" in record.getMessage() for record in caplog.records)
