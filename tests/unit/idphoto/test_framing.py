"""Framing on synthetic heads: each rule met, levelling, extension with the background, each refusal."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from common.errors import FaceCutOff, MatteMismatch, MultipleFaces, NoAlphaChannel, NoFace, ResolutionTooLow
from common.faces import Face, Point, select_face
from common.framing import analyse_head, find_crown, measure_frame, plan_frame, render_frame
from common.id_photo import make_id_photo, make_id_photos, matte_from_alpha
from common.id_specs import Measure, custom_spec, get_spec, list_specs
from common.imaging import DecodedImage

from .conftest import EYE, Scene, make_scene


def _shifted(face: Face, dx: float, dy: float, scale: float = 1.0) -> Face:
    def move(p: Point) -> Point:
        return Point(p.x * scale + dx, p.y * scale + dy)

    box = face.box
    return Face(
        box=(box[0] * scale + dx, box[1] * scale + dy, box[2] * scale + dx, box[3] * scale + dy),
        score=face.score,
        left_eye=move(face.left_eye),
        right_eye=move(face.right_eye),
        nose=move(face.nose),
        mouth_left=move(face.mouth_left),
        mouth_right=move(face.mouth_right),
    )


def test_analysis_finds_the_true_crown_and_chin(scene: Scene) -> None:
    head = analyse_head(scene.matte, scene.face)
    assert head.rotation_degrees == 0.0
    assert abs(head.crown_y - scene.crown.y) <= 1.5
    assert abs(head.chin_y - scene.chin.y) <= 0.01
    assert abs(head.mid_x - scene.crown.x) <= 0.01


@pytest.mark.parametrize("spec", list_specs(), ids=lambda s: s.id)
def test_every_catalogue_spec_is_met_on_a_well_framed_portrait(scene: Scene, spec) -> None:
    result = make_id_photo(scene.decoded, scene.matte, [scene.face], spec)
    report = result.report
    assert result.rgb.shape == (spec.pixel_size[1], spec.pixel_size[0], 3)
    assert (report.width_px, report.height_px) == spec.pixel_size
    geometry = {c.rule for c in report.rules} & {m.value for m in Measure}
    assert Measure.HEAD_HEIGHT.value in geometry
    assert report.passed, [c for c in report.rules if not c.passed]


@pytest.mark.parametrize("spec_id", ["icao-35x45", "uk-passport", "in-passport", "cn-1inch"])
def test_head_height_lands_in_the_middle_of_the_range(scene: Scene, spec_id: str) -> None:
    spec = get_spec(spec_id)
    bounds = spec.bounds(Measure.HEAD_HEIGHT)
    report = make_id_photo(scene.decoded, scene.matte, [scene.face], spec).report
    # One output row of rounding in the crown, nothing more.
    assert abs(report.head_height_ratio - bounds.middle) <= 1.5 / spec.pixel_size[1]


def test_crown_margin_and_chin_margin_rules_are_met_in_the_middle(scene: Scene) -> None:
    spec = get_spec("jp-passport")
    report = make_id_photo(scene.decoded, scene.matte, [scene.face], spec).report
    crown = spec.bounds(Measure.CROWN_MARGIN)
    assert abs(report.crown_margin_ratio - crown.middle) <= 1.5 / spec.pixel_size[1]
    assert spec.bounds(Measure.CHIN_MARGIN).contains(report.chin_margin_ratio)


def test_eye_line_rule_places_the_eyes_in_their_band(scene: Scene) -> None:
    spec = get_spec("us-visa")
    result = make_id_photo(scene.decoded, scene.matte, [scene.face], spec)
    eye_band = spec.bounds(Measure.EYE_LINE)
    assert eye_band.contains(result.report.eye_line_ratio)
    # The eyes drawn in the photo are where the report says.
    dark = np.all(result.rgb < 60, axis=2)
    rows = np.flatnonzero(dark.any(axis=1))
    eye_row = (rows.min() + rows.max()) / 2
    assert abs((1 - eye_row / spec.pixel_size[1]) - result.report.eye_line_ratio) <= 2 / spec.pixel_size[1]


def test_face_is_centred_on_its_midline() -> None:
    scene = make_scene(centre_x=380.0)
    result = make_id_photo(scene.decoded, scene.matte, [scene.face], get_spec("icao-35x45"))
    dark = np.all(result.rgb < 60, axis=2)
    cols = np.flatnonzero(dark.any(axis=0))
    assert abs((cols.min() + cols.max()) / 2 - result.rgb.shape[1] / 2) <= 1.5
    assert abs(result.report.horizontal_offset_ratio) < 0.005


@pytest.mark.parametrize("tilt", [5.0, -7.5])
def test_a_tilted_eye_line_is_levelled_about_the_eye_midpoint(tilt: float) -> None:
    scene = make_scene(tilt_degrees=tilt)
    spec = get_spec("icao-35x45")
    result = make_id_photo(scene.decoded, scene.matte, [scene.face], spec)
    report = result.report
    assert report.tilt_degrees == pytest.approx(tilt, abs=0.01)
    assert report.rotation_degrees == pytest.approx(tilt, abs=0.01)
    assert report.rotation_center.x == pytest.approx(scene.face.eye_midpoint.x, abs=0.01)
    dark = np.all(result.rgb < 60, axis=2)
    half = result.rgb.shape[1] // 2
    left_rows, right_rows = np.flatnonzero(dark[:, :half].any(axis=1)), np.flatnonzero(dark[:, half:].any(axis=1))
    assert abs(left_rows.mean() - right_rows.mean()) <= 1.0
    assert report.passed


def test_a_tilt_below_the_threshold_is_left_alone() -> None:
    scene = make_scene(tilt_degrees=0.6)
    head = analyse_head(scene.matte, scene.face, tilt_threshold=1.0)
    assert head.rotation_degrees == 0.0
    assert head.tilt_degrees == pytest.approx(0.6, abs=0.01)
    assert analyse_head(scene.matte, scene.face, tilt_threshold=0.5).rotation_degrees == pytest.approx(0.6, abs=0.01)


def test_crop_is_reported_in_source_pixels(scene: Scene) -> None:
    spec = get_spec("icao-35x45")
    head = analyse_head(scene.matte, scene.face)
    plan = plan_frame(head, spec)
    report = make_id_photo(scene.decoded, scene.matte, [scene.face], spec).report
    left, top, right, bottom = plan.crop
    assert (report.crop.left, report.crop.top) == (round(left, 2), round(top, 2))
    width, height = spec.pixel_size
    assert (right - left) * plan.scale == pytest.approx(width)
    assert (bottom - top) * plan.scale == pytest.approx(height)
    # The crown of the source lands at the reported crown margin.
    assert (head.crown_y - top) * plan.scale / height == pytest.approx(report.crown_margin_ratio, abs=1.5 / height)


def test_the_frame_past_the_photo_is_the_new_background_not_black() -> None:
    # The head sits near the top-left corner: the frame reaches past the left and top edges.
    scene = make_scene(centre_x=140.0, eye_y=200.0, eye_distance=100.0, size=(700, 900))
    spec = get_spec("cn-2inch-53")
    head = analyse_head(scene.matte, scene.face)
    plan = plan_frame(head, spec)
    assert plan.crop[0] < 0 and plan.crop[1] < 0
    result = make_id_photo(scene.decoded, scene.matte, [scene.face], spec, background="blue", output_format="png")
    corner = result.rgb[:5, :5].reshape(-1, 3)
    assert np.all(corner == (0, 143, 213))
    assert result.matte[:5, :5].max() == 0.0


def test_the_body_is_continued_below_the_photo() -> None:
    # The photo ends just below the shoulders' top: the frame reaches below it.
    scene = make_scene(size=(900, 720), eye_y=420.0)
    spec = get_spec("cn-2inch-53")
    plan = plan_frame(analyse_head(scene.matte, scene.face), spec)
    assert plan.crop[3] > 720
    _, alpha = render_frame(scene.decoded.rgb, scene.matte, plan)
    assert alpha[-1, alpha.shape[1] // 2] == pytest.approx(1.0, abs=0.01)


def test_several_specs_from_one_photo(scene: Scene) -> None:
    specs = [get_spec("cn-1inch"), get_spec("us-visa"), get_spec("cn-id-card")]
    results = make_id_photos(scene.decoded, scene.matte, [scene.face], specs, sheet="4x6")
    assert [r.report.spec_id for r in results] == ["cn-1inch", "us-visa", "cn-id-card"]
    assert [r.rgb.shape[:2][::-1] for r in results] == [s.pixel_size for s in specs]
    assert all(r.report.passed and r.sheet and r.sheet_count for r in results)


def test_custom_spec_from_pixels_with_head_ratio_and_margin(scene: Scene) -> None:
    spec = custom_spec(width_px=300, height_px=400, head_ratio=(0.6, 0.66), crown_margin=0.1)
    report = make_id_photo(scene.decoded, scene.matte, [scene.face], spec).report
    assert (report.width_px, report.height_px) == (300, 400)
    assert 0.6 <= report.head_height_ratio <= 0.66
    assert abs(report.crown_margin_ratio - 0.1) <= 1.5 / 400
    assert report.passed


# --- refusals ----------------------------------------------------------------------------------------


def test_no_face_is_refused(scene: Scene) -> None:
    with pytest.raises(NoFace) as caught:
        make_id_photo(scene.decoded, scene.matte, [], get_spec("icao-35x45"))
    assert caught.value.code == "no_face" and caught.value.http_status == 422


def test_two_faces_of_comparable_size_are_refused(scene: Scene) -> None:
    other = _shifted(scene.face, 300, 0, scale=0.9)
    with pytest.raises(MultipleFaces) as caught:
        select_face([scene.face, other])
    assert caught.value.code == "multiple_faces"


def test_a_small_face_in_the_background_is_ignored(scene: Scene) -> None:
    far = _shifted(scene.face, 0, 0, scale=0.3)
    assert select_face([far, scene.face]) is scene.face


def test_a_face_cut_by_the_edge_is_refused() -> None:
    scene = make_scene(centre_x=60.0)
    with pytest.raises(FaceCutOff) as caught:
        make_id_photo(scene.decoded, scene.matte, [scene.face], get_spec("icao-35x45"))
    assert caught.value.code == "face_cut_off"


def test_a_head_cut_by_the_top_edge_is_refused() -> None:
    scene = make_scene(eye_y=150.0)  # the crown (1.45 eye distances above the eyes) is above the photo
    with pytest.raises(FaceCutOff, match="top of the head"):
        analyse_head(scene.matte, scene.face)


@pytest.mark.parametrize("top", [100, 0])
def test_a_speck_of_matte_above_the_head_is_not_its_crown(scene: Scene, top: int) -> None:
    """An 8x8 blob of matte, apart from the head, above it (at row 0 too): the crown is the head's."""
    matte = scene.matte.copy()
    matte[top : top + 8, 440:448] = 1.0
    head = analyse_head(matte, scene.face)
    assert abs(head.crown_y - scene.crown.y) <= 1.5
    spec = get_spec("icao-35x45")
    report = make_id_photo(scene.decoded, matte, [scene.face], spec).report
    bounds = spec.bounds(Measure.HEAD_HEIGHT)
    assert report.passed and bounds.min <= report.head_height_ratio <= bounds.max


def test_a_head_cut_by_the_top_edge_is_refused_where_the_matte_is_soft() -> None:
    """A network's matte is often below one half in the photo's first rows: the head still runs off
    the top edge there."""
    scene = make_scene(eye_y=150.0)
    matte = scene.matte.copy()
    matte[:2] *= 0.45
    with pytest.raises(FaceCutOff, match="top of the head"):
        analyse_head(matte, scene.face)


def test_a_chin_below_the_photo_is_refused() -> None:
    scene = make_scene(size=(900, 700), eye_y=560.0, body=False)
    with pytest.raises(FaceCutOff):
        analyse_head(scene.matte, scene.face)


def test_too_few_pixels_is_refused_with_the_factor() -> None:
    """Refused only when even the smallest head the spec allows needs more than the upscale limit."""
    scene = make_scene(eye_distance=30.0, eye_y=300.0, size=(500, 600))
    spec = get_spec("us-visa")
    head = analyse_head(scene.matte, scene.face)
    needed = spec.bounds(Measure.HEAD_HEIGHT).min * spec.pixel_size[1] / head.head_height
    assert needed > 2
    with pytest.raises(ResolutionTooLow) as caught:
        plan_frame(head, spec, max_upscale=2.0)
    assert caught.value.code == "resolution_too_low"
    assert caught.value.factor == pytest.approx(needed)
    assert f"{needed:.2f}x" in caught.value.message
    # A looser bound lets it through, and the report records the factor used (the middle of the range).
    middle = spec.bounds(Measure.HEAD_HEIGHT).middle * spec.pixel_size[1] / head.head_height
    report = make_id_photo(scene.decoded, scene.matte, [scene.face], spec, max_upscale=5.0).report
    assert report.upscale_factor == pytest.approx(middle, abs=1e-3)


def test_a_head_too_small_for_the_middle_of_the_range_gets_a_smaller_head_within_it() -> None:
    """The middle of the head range would need more than the limit, the bottom of it less: the photo is
    made, with the largest head the limit allows, and meets the spec."""
    scene = make_scene(eye_distance=56.0, eye_y=300.0, size=(500, 600))
    spec = get_spec("us-visa")
    head = analyse_head(scene.matte, scene.face)
    bounds = spec.bounds(Measure.HEAD_HEIGHT)
    height = spec.pixel_size[1]
    assert bounds.min * height / head.head_height < 2 < bounds.middle * height / head.head_height
    plan = plan_frame(head, spec, max_upscale=2.0)
    assert plan.scale == pytest.approx(2.0)
    assert bounds.min <= plan.planned_head_ratio < bounds.middle
    report = make_id_photo(scene.decoded, scene.matte, [scene.face], spec, max_upscale=2.0).report
    assert report.passed and report.upscale_factor == pytest.approx(2.0, abs=1e-3)
    assert bounds.min <= report.head_height_ratio <= bounds.max


def test_a_matte_that_misses_the_face_is_refused(scene: Scene) -> None:
    empty = np.zeros_like(scene.matte)
    with pytest.raises(MatteMismatch):
        analyse_head(empty, scene.face)


def test_matte_source_alpha_needs_an_alpha_channel(scene: Scene) -> None:
    with pytest.raises(NoAlphaChannel) as caught:
        matte_from_alpha(scene.decoded)
    assert caught.value.code == "no_alpha_channel"
    with_alpha = DecodedImage(rgb=scene.decoded.rgb, alpha=scene.matte, dpi=None, source_format="PNG")
    assert matte_from_alpha(with_alpha) is scene.matte


def test_a_background_outside_the_spec_fails_its_rule(scene: Scene) -> None:
    report = make_id_photo(scene.decoded, scene.matte, [scene.face], get_spec("uk-passport"), "white").report
    check = next(c for c in report.rules if c.rule == "background_colour")
    assert check.status == "fail" and check.measured == "white"
    assert not report.passed


def test_matte_residue_lowers_background_uniformity(scene: Scene) -> None:
    smudged = scene.matte.copy()
    spec = get_spec("cn-2inch-53")
    left, top, right, _ = plan_frame(analyse_head(scene.matte, scene.face), spec).crop
    # Half-kept old background in the frame's top corners, away from the head.
    x0, x1, y0 = round(left), round(right), round(top)
    smudged[y0 : y0 + 90, x0 : x0 + 90] = 0.4
    smudged[y0 : y0 + 90, x1 - 90 : x1] = 0.4
    clean = make_id_photo(scene.decoded, scene.matte, [scene.face], spec).report
    dirty = make_id_photo(scene.decoded, smudged, [scene.face], spec).report
    assert clean.background_uniformity > 0.99
    assert dirty.background_uniformity < clean.background_uniformity
    check = next(c for c in dirty.rules if c.rule == "background_uniform")
    assert check.status == "fail"


def test_measure_frame_reads_the_crown_from_the_rendered_matte(scene: Scene) -> None:
    spec = get_spec("icao-35x45")
    head = analyse_head(scene.matte, scene.face)
    plan = plan_frame(head, spec)
    _, alpha = render_frame(scene.decoded.rgb, scene.matte, plan)
    measures = measure_frame(alpha, head, plan)
    half = 0.5 * head.face_width * plan.scale
    centre = spec.pixel_size[0] / 2
    assert measures.crown_px == find_crown(alpha, centre - half, centre + half, measures.eye_px)
    assert dataclasses.asdict(measures)["head_height"] == pytest.approx(
        (measures.chin_px - measures.crown_px) / spec.pixel_size[1]
    )


def test_eye_pixels_exist_in_the_synthetic_scene(scene: Scene) -> None:
    # Guards the tests above that find the eyes as dark pixels.
    assert np.any(np.all(scene.decoded.rgb == EYE, axis=2))
