"""``backdrop`` as a user runs it: a real process, real files, a checkpoint in the official format."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BACKDROP = Path(sys.executable).parent / "backdrop"


def run_cli(*args: str | Path, model_path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BACKDROP_MODEL_PATH": str(model_path), "BACKDROP_TORCH_THREADS": "2"}
    return subprocess.run(
        [str(BACKDROP), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _photo(path: Path, size: tuple[int, int], *, orientation: int | None = None) -> Path:
    rng = np.random.default_rng(len(path.name))
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    if orientation is None:
        image.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(path, exif=exif)
    return path


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    _photo(root / "a.jpg", (120, 160))
    _photo(root / "nested" / "b.png", (200, 100))
    _photo(root / "nested" / "rotated.jpg", (160, 90), orientation=6)
    (root / "notes.txt").write_text("not an image and not picked up from a folder")
    return root


def test_folder_recursive_with_matte_and_cutout(photos: Path, tmp_path: Path, official_format_checkpoint: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(
        "replace", photos, "--background", "red", "--output", out, "--matte", "--cutout",
        model_path=official_format_checkpoint, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "3 of 3 photos done" in result.stderr
    produced = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert produced == sorted(
        [
            "a.jpg", "a.cutout.png", "a.matte.png",
            "nested/b.jpg", "nested/b.cutout.png", "nested/b.matte.png",
            "nested/rotated.jpg", "nested/rotated.cutout.png", "nested/rotated.matte.png",
        ]
    )  # fmt: skip
    assert _size(out / "a.jpg") == (120, 160)
    assert _size(out / "nested" / "b.jpg") == (200, 100)
    # EXIF orientation 6: stored 160x90, displayed 90x160.
    assert _size(out / "nested" / "rotated.jpg") == (90, 160)
    assert _size(out / "nested" / "rotated.matte.png") == (90, 160)
    with Image.open(out / "a.cutout.png") as cutout:
        assert cutout.mode == "RGBA"


def test_failures_are_named_and_others_still_processed(tmp_path: Path, official_format_checkpoint: Path) -> None:
    good = _photo(tmp_path / "good.png", (64, 64))
    data = io.BytesIO()
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(data, "JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    text = tmp_path / "text.jpg"
    text.write_text("hello")
    tiny = _photo(tmp_path / "tiny.png", (8, 8))
    missing = tmp_path / "missing.jpg"

    result = run_cli(
        "replace", good, truncated, text, tiny, missing, "--background", "#00ff00", "-f", "png", "-o", "out",
        model_path=official_format_checkpoint, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "1 of 5 photos done" in result.stderr
    assert f"{truncated}: corrupt_image" in result.stderr
    assert f"{text}: unsupported_image" in result.stderr
    assert f"{tiny}: image_too_small" in result.stderr
    assert f"{missing}: unreadable" in result.stderr
    assert _size(tmp_path / "out" / "good.png") == (64, 64)


@pytest.mark.parametrize("server", [False, True])
def test_missing_inputs_are_named_before_the_model_or_a_server_is_used(tmp_path: Path, server: bool) -> None:
    # No weights and no server: had the model been loaded (or the server called) first, that error would show.
    remote = ["--server", "http://127.0.0.1:9"] if server else []
    result = run_cli("replace", "nonexist.jpg", "gone", *remote, model_path=tmp_path / "absent.ckpt", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "no such file or folder: nonexist.jpg, gone" in result.stderr
    assert "weights fetch" not in result.stderr and "absent.ckpt" not in result.stderr
    assert "127.0.0.1:9" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_verbose_after_the_subcommand(tmp_path: Path, official_format_checkpoint: Path) -> None:
    photo = _photo(tmp_path / "p.png", (64, 64))
    result = run_cli("replace", photo, "-o", "out", "-v", model_path=official_format_checkpoint, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"INFO MODNet loaded from {official_format_checkpoint}" in result.stderr

    quiet = run_cli("replace", photo, "-o", "out", model_path=official_format_checkpoint, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "INFO" not in quiet.stderr

    for args in (["weights", "verify", "--verbose"], ["weights", "-v", "verify"], ["-v", "weights", "verify"]):
        nested = run_cli(*args, model_path=official_format_checkpoint, cwd=tmp_path)
        assert nested.returncode == 1, nested.stderr  # the test checkpoint is not the official file
        assert "No such option" not in nested.stderr


def test_a_corrupt_checkpoint_gets_our_advice_not_torchs(tmp_path: Path, official_format_checkpoint: Path) -> None:
    photo = _photo(tmp_path / "p.png", (64, 64))
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(official_format_checkpoint.read_bytes()[:5000])
    result = run_cli("replace", photo, model_path=corrupt, cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot read {corrupt} as a torch checkpoint" in result.stderr
    assert "backdrop weights fetch --force" in result.stderr
    assert "weights_only" not in result.stderr and "Traceback" not in result.stderr


def test_transparent_defaults_to_png(tmp_path: Path, official_format_checkpoint: Path) -> None:
    photo = _photo(tmp_path / "p.jpg", (96, 64))
    result = run_cli(
        "replace",
        photo,
        "-b",
        "transparent",
        "-o",
        "out",
        model_path=official_format_checkpoint,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "out" / "p.png") as image:
        assert image.mode == "RGBA" and image.size == (96, 64)


def test_image_background(tmp_path: Path, official_format_checkpoint: Path) -> None:
    photo = _photo(tmp_path / "p.jpg", (96, 64))
    backdrop = tmp_path / "beach.png"
    Image.new("RGB", (300, 100), (10, 20, 30)).save(backdrop)
    result = run_cli("replace", photo, "-b", backdrop, "-o", "out", model_path=official_format_checkpoint, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _size(tmp_path / "out" / "p.jpg") == (96, 64)


def test_bad_background_is_a_usage_error(tmp_path: Path, official_format_checkpoint: Path) -> None:
    photo = _photo(tmp_path / "p.jpg", (64, 64))
    result = run_cli("replace", photo, "-b", "purple", model_path=official_format_checkpoint, cwd=tmp_path)
    assert result.returncode == 2
    assert "purple" in result.stderr


def test_missing_weights_say_how_to_get_them(tmp_path: Path) -> None:
    photo = _photo(tmp_path / "p.jpg", (64, 64))
    result = run_cli("replace", photo, model_path=tmp_path / "absent.ckpt", cwd=tmp_path)
    assert result.returncode == 1
    assert "absent.ckpt" in result.stderr
    assert "backdrop weights fetch" in result.stderr
    assert not (tmp_path / "out").exists()


def test_weights_verify_refuses_other_files(tmp_path: Path, official_format_checkpoint: Path) -> None:
    result = run_cli("weights", "verify", model_path=official_format_checkpoint, cwd=tmp_path)
    assert result.returncode == 1
    assert "is missing or is not the official checkpoint" in result.stderr
