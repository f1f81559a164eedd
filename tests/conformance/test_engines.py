"""Every engine reproduces the official fixtures: the torch reference within 1e-4 (as in
test_modnet_fixtures.py), the others within the 1e-3 that makes an engine eligible for ``auto``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from worker.engines.base import Engine, Precision
from worker.engines.selection import CONFORMANCE_TOLERANCE


def _tolerance(engine: Engine) -> float:
    return 1e-4 if engine.name == "torch" else CONFORMANCE_TOLERANCE


@pytest.fixture(scope="module")
def vectors(modnet_fixtures: Path) -> dict[str, np.ndarray]:
    with np.load(modnet_fixtures / "vectors.npz") as data:
        return {name: data[name] for name in data.files if name.endswith(("__input", "__pred_matte", "case_names"))}


@pytest.fixture(scope="module")
def pipeline_vectors(modnet_fixtures: Path) -> dict[str, np.ndarray]:
    with np.load(modnet_fixtures / "pipeline_vectors.npz") as data:
        return {name: data[name] for name in data.files}


def test_model_level_vectors(engine: Engine, vectors: dict[str, np.ndarray]) -> None:
    """The torch engine's module is checked head by head in test_modnet_fixtures.py."""
    if engine.name == "torch":
        pytest.skip("covered by test_modnet_fixtures.py::test_model_level_vectors")
    assert engine.precision is Precision.FP32
    for case in vectors["case_names"]:
        matte = engine.run(vectors[f"{case}__input"])
        expected = vectors[f"{case}__pred_matte"]
        assert matte.shape == expected.shape, case
        np.testing.assert_allclose(matte, expected, rtol=0, atol=_tolerance(engine), err_msg=case)


def test_predict_gives_each_image_its_own_matte(engine: Engine, pipeline_vectors: dict[str, np.ndarray]) -> None:
    """Several images in one call (concurrent requests on a CPU engine) match one at a time, in order."""
    photo = pipeline_vectors["astronaut__image_uint8"][128:384, 128:384]
    images = [photo, photo[::-1].copy(), photo[:, ::-1].copy(), np.ascontiguousarray(photo.transpose(1, 0, 2))]
    together = engine.predict(images)
    alone = [engine.predict([image])[0] for image in images]
    assert len(together) == 4
    for a, b in zip(together, alone, strict=True):
        assert a.shape == (256, 256) and a.dtype == np.float32
        # concurrent requests may run other kernels than a single one: equal within the engine bound
        np.testing.assert_allclose(a, b, rtol=0, atol=_tolerance(engine))
    assert np.abs(together[0] - together[1]).mean() > 1e-2  # different photos, different mattes


def test_predict_refuses_mixed_shapes_and_bad_sides(engine: Engine) -> None:
    with pytest.raises(ValueError, match="one shape"):
        engine.predict([np.zeros((64, 64, 3), np.uint8), np.zeros((64, 96, 3), np.uint8)])
    with pytest.raises(ValueError, match="multiples of 32"):
        engine.predict([np.zeros((64, 80, 3), np.uint8)])
    assert engine.predict([]) == []
