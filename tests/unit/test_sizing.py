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


def test_bucket_sizes_are_few_and_network_legal() -> None:
    from common.sizing import bucket_sizes

    sizes = bucket_sizes()
    assert sizes[:3] == [(512, 512), (640, 512), (512, 640)]
    assert (672, 512) in sizes and (768, 512) in sizes and (896, 512) in sizes
    assert len(sizes) == 9 and all(h % 32 == 0 and w % 32 == 0 for h, w in sizes)
    assert all(max(size) <= 256 for size in bucket_sizes(ref_size=128, max_side=256))


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1600, 1200), (672, 512)),  # 3:4
        ((1250, 1000), (640, 512)),  # 4:5
        ((1000, 1000), (512, 512)),
        ((1500, 1000), (768, 512)),  # 2:3
        ((1000, 1500), (512, 768)),
        ((718, 640), (640, 512)),  # 1.12: nearer 5:4 than 1:1
        ((1014, 978), (512, 512)),
        ((2000, 300), None),  # far from every bucket: keeps its own size
    ],
)
def test_photos_snap_to_the_nearest_bucket_of_their_orientation(
    size: tuple[int, int], expected: tuple[int, int] | None
) -> None:
    from common.sizing import bucket_size, bucketed_inference_size

    assert bucket_size(*size) == expected
    assert bucketed_inference_size(*size) == (expected or inference_size(*size))


def test_buckets_only_with_the_setting() -> None:
    from common.pipeline import network_input_shape
    from common.settings import Settings

    assert network_input_shape(718, 640, Settings()) == (576, 512)
    assert network_input_shape(718, 640, Settings(shape_buckets="resize")) == (640, 512)
    assert network_input_shape(718, 640, Settings(shape_buckets="resize"), SizeRule.COLAB) == (544, 512)
