"""The spec catalogue: ids, pixel sizes from mm and DPI, ranges as ratios, sources, custom specs."""

from __future__ import annotations

import pytest

from common.errors import InvalidSpec, UnknownSpec
from common.id_specs import (
    Measure,
    catalogue,
    colour_names,
    custom_spec,
    get_spec,
    get_specs,
    list_specs,
    parse_catalogue,
)

REQUIRED_IDS = {
    "icao-35x45", "uk-passport", "jp-passport", "us-passport", "us-visa", "in-passport", "cn-id-card",
    "cn-passport", "cn-1inch", "cn-1inch-small", "cn-1inch-large", "cn-2inch", "cn-2inch-53",
    "cn-2inch-small", "cn-chsi",
}  # fmt: skip


def test_the_catalogue_has_the_required_ids() -> None:
    assert {s.id for s in list_specs()} >= REQUIRED_IDS


@pytest.mark.parametrize(
    ("spec_id", "size", "dpi"),
    [
        ("icao-35x45", (413, 531), 300),
        ("us-passport", (600, 600), 300),
        ("cn-id-card", (358, 441), 350),
        ("cn-passport", (390, 567), 300),
        ("cn-1inch", (295, 413), 300),
        ("cn-1inch-small", (260, 378), 300),
        ("cn-1inch-large", (390, 567), 300),
        ("cn-2inch-small", (413, 531), 300),
        ("cn-2inch", (413, 579), 300),
        ("cn-2inch-53", (413, 626), 300),
        ("cn-chsi", (480, 640), 300),
    ],
)
def test_pixel_sizes_and_dpi(spec_id: str, size: tuple[int, int], dpi: int) -> None:
    spec = get_spec(spec_id)
    assert spec.pixel_size == size and spec.dpi == dpi


def test_pixel_sizes_follow_from_mm_and_dpi() -> None:
    for spec in list_specs():
        if spec.width_mm is not None:
            assert spec.pixel_size == (round(spec.width_mm / 25.4 * spec.dpi), round(spec.height_mm / 25.4 * spec.dpi))


def test_ranges_are_read_as_ratios_of_the_height() -> None:
    icao = get_spec("icao-35x45").bounds(Measure.HEAD_HEIGHT)
    assert (icao.min, icao.max) == pytest.approx((32 / 45, 0.80))  # 70-80 % intersected with 32-36 mm
    us = get_spec("us-visa")
    assert (us.bounds(Measure.HEAD_HEIGHT).min, us.bounds(Measure.HEAD_HEIGHT).max) == pytest.approx((0.5, 0.6875))
    assert (us.bounds(Measure.EYE_LINE).min, us.bounds(Measure.EYE_LINE).max) == pytest.approx((0.5625, 0.6875))
    cn = get_spec("cn-id-card")
    assert cn.bounds(Measure.CROWN_MARGIN).min == pytest.approx(7 / 441)
    assert cn.bounds(Measure.EYE_LINE).min == pytest.approx(207 / 441) and cn.bounds(Measure.EYE_LINE).max is None
    jp = get_spec("jp-passport").bounds(Measure.CROWN_MARGIN)
    assert (jp.min, jp.max) == pytest.approx((2 / 45, 6 / 45))


def test_every_number_has_a_source_and_every_colour_is_known() -> None:
    names = colour_names()
    for spec in list_specs():
        assert spec.size_source
        for measure in Measure:
            assert all(rule.source for rule in spec.rules(measure))
        assert spec.backgrounds and all(name in names for name in spec.backgrounds)
        assert spec.file is None or spec.file.source
    assert "white" not in get_spec("uk-passport").backgrounds


def test_lookup_and_several_specs() -> None:
    assert get_spec(" US-Visa ").id == "us-visa"
    assert [s.id for s in get_specs("cn-1inch, us-visa,cn-1inch")] == ["cn-1inch", "us-visa"]
    with pytest.raises(UnknownSpec) as caught:
        get_spec("mars-passport")
    assert caught.value.code == "unknown_id_spec" and caught.value.http_status == 422


def test_the_catalogue_serialises() -> None:
    dumped = catalogue().model_dump(mode="json")
    assert {s["id"] for s in dumped["spec"]} >= REQUIRED_IDS


def test_custom_spec_from_mm_and_dpi() -> None:
    spec = custom_spec(width_mm=30, height_mm=40, dpi=600, head_ratio=(0.6, 0.7), crown_margin=(0.05, 0.1))
    assert spec.pixel_size == (709, 945)
    assert spec.bounds(Measure.CROWN_MARGIN).max == pytest.approx(0.1)
    single = custom_spec(width_px=400, height_px=500, head_ratio=0.7)
    assert single.bounds(Measure.HEAD_HEIGHT).min < 0.7 < single.bounds(Measure.HEAD_HEIGHT).max


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width_mm": 30},  # no height
        {"width_px": 400, "height_px": 500, "head_ratio": (0.8, 0.6)},  # inverted range
        {"width_px": 400, "height_px": 500, "head_ratio": (0.6, 1.4)},  # head taller than the photo
        {"width_px": 4, "height_px": 5},  # too small
    ],
)
def test_impossible_custom_specs_are_refused(kwargs: dict) -> None:
    with pytest.raises(InvalidSpec):
        custom_spec(**kwargs)


def test_a_broken_catalogue_is_refused() -> None:
    with pytest.raises(InvalidSpec):
        parse_catalogue('[colours]\n[[spec]]\nid = "Bad Id"\n')
