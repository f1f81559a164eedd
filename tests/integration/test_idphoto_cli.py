"""``backdrop idphoto``: files named per spec, the report beside each photo, a pass/fail table."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from common.id_specs import get_spec, list_specs
from worker.cli import main


def test_list_specs_prints_the_catalogue() -> None:
    result = CliRunner().invoke(main, ["idphoto", "--list-specs"])
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.splitlines() if line.strip()]
    assert listed == [spec.id for spec in list_specs()]


def test_photo_report_and_sheet_per_spec(face_fixtures: Path, tmp_path: Path) -> None:
    photo = face_fixtures / "test2.cutout.png"
    out = tmp_path / "out"
    args = ["idphoto", str(photo), "--spec", "icao-35x45,us-visa", "--matte-source", "alpha", "--sheet", "4x6"]
    result = CliRunner().invoke(main, [*args, "--max-kb", "240", "-o", str(out)])
    assert result.exit_code == 0, result.output
    for spec_id in ("icao-35x45", "us-visa"):
        spec = get_spec(spec_id)
        with Image.open(out / f"test2.cutout.{spec_id}.jpg") as image:
            assert image.size == (spec.width_px, spec.height_px)
        assert (out / f"test2.cutout.{spec_id}.jpg").stat().st_size <= 240 * 1000
        report = json.loads((out / f"test2.cutout.{spec_id}.report.json").read_text())
        assert report["spec_id"] == spec_id and report["passed"]
        with Image.open(out / f"test2.cutout.{spec_id}.sheet.jpg") as sheet:
            assert sorted(sheet.size) == [1200, 1800]  # 4 x 6 in at 300 dpi, either way round
        assert any(line.split()[1:3] == [spec_id, "pass"] for line in result.output.splitlines() if spec_id in line)


def test_a_spec_is_required_and_a_bad_one_is_named(face_fixtures: Path, tmp_path: Path) -> None:
    photo = str(face_fixtures / "test2.cutout.png")
    missing = CliRunner().invoke(main, ["idphoto", photo, "-o", str(tmp_path)])
    assert missing.exit_code == 2 and "--spec" in missing.output
    unknown = CliRunner().invoke(main, ["idphoto", photo, "--spec", "mars-passport", "-o", str(tmp_path)])
    assert unknown.exit_code == 2 and "mars-passport" in unknown.output
    assert not list(tmp_path.iterdir())


def test_a_failing_photo_is_named_with_its_code(tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    shape = Image.new("RGBA", (300, 400), (200, 200, 200, 0))
    shape.paste((200, 200, 200, 255), (80, 100, 220, 400))  # a "person" with no face
    shape.save(blank)
    args = ["idphoto", str(blank), "--spec", "icao-35x45", "--matte-source", "alpha", "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "no_face" in result.output
