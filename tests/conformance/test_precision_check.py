"""The reduced-precision self-check on the fixtures' random weights: their matte is never saturated,
so bf16 moves it far more than a trained checkpoint's, and the check must refuse it; a tolerance wide
enough lets the same figures pass."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from worker.engines.base import Engine, Precision
from worker.engines.precision_check import DEFAULT_TOLERANCE
from worker.engines.selection import choose_precision

CHECK_SIZE = (256, 192)  # smaller than a worker's 768x512, to keep the suite short


@pytest.fixture(params=["openvino", "torch"])
def fp32_engine(request: pytest.FixtureRequest, build_engine: Callable[[str], Engine]) -> Engine:
    engine = build_engine(request.param)
    if engine.reduced() is None:
        pytest.skip(f"{engine.name} has no faster precision on this CPU (no native bf16)")
    return engine


def test_random_weights_fail_the_default_tolerance(fp32_engine: Engine) -> None:
    chosen, check, reason = choose_precision(fp32_engine, "auto", tolerance=DEFAULT_TOLERANCE, check_size=CHECK_SIZE)
    assert chosen is fp32_engine and chosen.precision is Precision.FP32
    assert check is not None and not check.passed
    assert check.precision is Precision.BF16 and check.images == 3 and check.size == CHECK_SIZE
    assert max(check.mean, check.p99) >= DEFAULT_TOLERANCE / 2
    assert reason.startswith("fp32: bf16 failed")


def test_a_wide_tolerance_lets_the_same_weights_pass(fp32_engine: Engine) -> None:
    chosen, check, reason = choose_precision(fp32_engine, "auto", tolerance=1.0, check_size=CHECK_SIZE)
    assert check is not None and check.passed
    assert 0 < check.mean < check.p99 < 0.5  # bf16 really ran: the matte moved, within the bound
    assert chosen is not fp32_engine and chosen.precision is Precision.BF16 and chosen.name == fp32_engine.name
    assert reason.startswith("bf16 passed")
    # the explicit settings override the check either way
    forced, no_check, _ = choose_precision(fp32_engine, "on", check_size=CHECK_SIZE)
    assert forced.precision is Precision.BF16 and no_check is None
    kept, no_check, _ = choose_precision(fp32_engine, "off", tolerance=1.0, check_size=CHECK_SIZE)
    assert kept is fp32_engine and no_check is None
