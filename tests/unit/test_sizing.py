"""Network input sizes: our aspect-preserving rule and the official colab rule."""

from __future__ import annotations

import pytest

from common.sizing import SizeRule, colab_inference_size, inference_size, network_input_size


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((512, 512), (512, 512)),
        ((1146, 764), (768, 512)),
        ((300, 420), (512, 704)),
        ((800, 450), (800, 448)),
        ((480, 640), (480, 640)),
        ((1080, 1920), (512, 896)),
        ((4000, 3000), (672, 512)),
        ((511, 511), (512, 512)),
        ((2000, 300), (1984, 288)),
    ],
)
def test_colab_rule_matches_the_official_examples(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert colab_inference_size(*size) == expected


def test_colab_rule_refuses_what_would_crash() -> None:
    with pytest.raises(ValueError, match="576x0"):
        colab_inference_size(600, 20)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((512, 512), (512, 512)),
        ((1600, 1200), (672, 512)),  # 682.7 -> 672
        ((1200, 1600), (512, 672)),
        ((4000, 3000), (672, 512)),
        ((300, 420), (512, 704)),  # small images are scaled up to the reference
        ((1080, 1920), (512, 896)),
        ((2000, 300), (1024, 160)),  # long side bounded: 1024 and 153.6 -> 160
        ((6000, 40), (1024, 32)),
        ((33, 33), (512, 512)),
    ],
)
def test_aspect_rule(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert inference_size(*size) == expected


@pytest.mark.parametrize("height", [32, 45, 300, 511, 777, 1146, 2000, 4000, 9000])
@pytest.mark.parametrize("width", [32, 64, 333, 512, 764, 1200, 3000, 12000])
def test_aspect_rule_invariants(height: int, width: int) -> None:
    rh, rw = inference_size(height, width, ref_size=512, max_side=1024)
    assert rh % 32 == 0 and rw % 32 == 0
    assert 32 <= rh <= 1024 and 32 <= rw <= 1024
    scale = min(512 / min(height, width), 1024 / max(height, width))
    # No distortion beyond rounding each side to the nearest multiple of 32 (or the 32 minimum).
    for side, rounded in ((height, rh), (width, rw)):
        assert abs(side * scale - rounded) <= 16 or rounded == 32


def test_network_input_size_dispatches() -> None:
    assert network_input_size(2000, 300, SizeRule.COLAB) == (1984, 288)
    assert network_input_size(2000, 300, SizeRule.ASPECT, max_side=1024) == (1024, 160)
