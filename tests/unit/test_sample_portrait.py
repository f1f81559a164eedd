"""The sample portrait of the quick start: committed, and what ``examples/make_sample.py`` draws."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _make_sample() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample", EXAMPLES / "make_sample.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_portrait_is_the_drawing_of_the_script() -> None:
    make_sample = _make_sample()
    with Image.open(EXAMPLES / "portrait.jpg") as committed:
        assert committed.format == "JPEG" and committed.mode == "RGB"
        assert committed.size == make_sample.SIZE == (600, 800)
        shipped = np.asarray(committed, dtype=np.float32)
    drawn = np.asarray(make_sample.draw_portrait(), dtype=np.float32)
    # JPEG loses a little; another drawing would differ by far more.
    assert np.abs(shipped - drawn).mean() < 3.0
    assert (EXAMPLES / "portrait.jpg").stat().st_size < 100_000


def test_it_is_a_head_and_shoulders_on_a_plain_wall() -> None:
    make_sample = _make_sample()
    pixels = np.asarray(make_sample.draw_portrait(), dtype=np.int16)
    height, width, _ = pixels.shape

    def near(y: int, x: int, colour: tuple[int, int, int], tolerance: int = 30) -> bool:
        return bool(np.abs(pixels[y, x] - np.array(colour)).max() <= tolerance)

    for y, x in [(10, 10), (10, width - 10), (height // 2, 20), (height // 2, width - 20)]:
        assert np.abs(pixels[y, x] - pixels[10, 10]).max() < 40, "the wall is plain"
    assert near(int(height * 0.45), width // 2, make_sample.SKIN)  # the face, below the nose
    assert near(int(height * 0.9), width // 2, make_sample.SHIRT)  # the shoulders fill the bottom
    assert near(int(height * 0.19), width // 2, make_sample.HAIR)
    assert not near(int(height * 0.9), 5, make_sample.SHIRT), "the wall shows beside the shoulders"
