"""Our MODNet against the official implementation's recorded keys and outputs (fixture README, section 8)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.sizing import colab_inference_size
from worker.checkpoint import load_modnet
from worker.engines.base import Engine
from worker.engines.selection import CONFORMANCE_TOLERANCE
from worker.modnet import MODNet
from worker.runtime import ModelRunner, Precision, colab_matte

ATOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _two_threads() -> None:
    # The fixtures were produced with 2 threads; this keeps kernel choices comparable.
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model(modnet_fixtures: Path) -> MODNet:
    return load_modnet(modnet_fixtures / "random_weights.ckpt")


@pytest.fixture(scope="module")
def vectors(modnet_fixtures: Path) -> dict[str, np.ndarray]:
    with np.load(modnet_fixtures / "vectors.npz") as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def pipeline_vectors(modnet_fixtures: Path) -> dict[str, np.ndarray]:
    with np.load(modnet_fixtures / "pipeline_vectors.npz") as data:
        return {name: data[name] for name in data.files}


def test_state_dict_matches_manifest_in_order(modnet_fixtures: Path) -> None:
    manifest = json.loads((modnet_fixtures / "state_dict_manifest.json").read_text())
    wrapped = torch.nn.DataParallel(MODNet()).state_dict()
    ours = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in wrapped.items()]
    official = [(e["key"], e["shape"], e["dtype"]) for e in manifest["keys"]]
    assert ours == official
    model = MODNet()
    assert sum(p.numel() for p in model.parameters()) == manifest["totals"]["parameter_count"] == 6_487_075
    assert model.backbone is model.lr_branch.backbone


def test_random_weights_load_strictly_unchanged(modnet_fixtures: Path) -> None:
    state = torch.load(modnet_fixtures / "random_weights.ckpt", map_location="cpu", weights_only=True)
    result = torch.nn.DataParallel(MODNet()).load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_model_level_vectors(model: MODNet, vectors: dict[str, np.ndarray]) -> None:
    for case in vectors["case_names"]:
        x = torch.from_numpy(vectors[f"{case}__input"])
        with torch.inference_mode():
            matte = model(x)
            semantic, detail, full_matte = model.forward_heads(x, inference=False)
        np.testing.assert_allclose(matte.numpy(), vectors[f"{case}__pred_matte"], rtol=0, atol=ATOL, err_msg=case)
        np.testing.assert_allclose(full_matte.numpy(), vectors[f"{case}__pred_matte"], rtol=0, atol=ATOL)
        np.testing.assert_allclose(
            semantic.numpy(), vectors[f"{case}__full__pred_semantic"], rtol=0, atol=ATOL, err_msg=case
        )
        np.testing.assert_allclose(
            detail.numpy(), vectors[f"{case}__full__pred_detail"], rtol=0, atol=ATOL, err_msg=case
        )


def test_inference_flag_skips_auxiliary_heads(model: MODNet, vectors: dict[str, np.ndarray]) -> None:
    x = torch.from_numpy(vectors["b1_64x96__input"])
    with torch.inference_mode():
        semantic, detail, _ = model.forward_heads(x, inference=True)
    assert semantic is None and detail is None


def test_per_layer_activations(model: MODNet, vectors: dict[str, np.ndarray]) -> None:
    names = [str(n) for n in vectors["act_names"]]
    modules = dict(model.named_modules())
    captured: dict[str, np.ndarray] = {}
    hooks = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach().clone().numpy())
        )
        for name in names
    ]
    try:
        with torch.inference_mode():
            model(torch.from_numpy(vectors["b1_64x96__input"]))
    finally:
        for hook in hooks:
            hook.remove()
    for name in names:
        np.testing.assert_allclose(captured[name], vectors[f"b1_64x96__act__{name}"], rtol=0, atol=ATOL, err_msg=name)


def test_colab_pipeline_vectors(engine: Engine, modnet_fixtures: Path, pipeline_vectors: dict[str, np.ndarray]) -> None:
    """Against every engine (tests/conformance/conftest.py): torch within 1e-4, the others within 1e-3."""
    atol = ATOL if engine.name == "torch" else CONFORMANCE_TOLERANCE
    runner = ModelRunner(load_modnet(modnet_fixtures / "random_weights.ckpt"), torch.device("cpu"), engine=engine)
    for case in pipeline_vectors["case_names"]:
        image = pipeline_vectors[f"{case}__image_uint8"]
        height, width = image.shape[:2]
        _, _, rh, rw = pipeline_vectors[f"{case}__resized_shape"].tolist()
        assert colab_inference_size(height, width) == (rh, rw), case

        matte = colab_matte(runner, image)
        np.testing.assert_allclose(matte, pipeline_vectors[f"{case}__matte"], rtol=0, atol=atol, err_msg=case)
        png = (matte * 255).astype(np.uint8)
        diff = np.abs(png.astype(int) - pipeline_vectors[f"{case}__matte_png_uint8"].astype(int))
        assert diff.max() <= 1, case


def test_colab_model_input_and_output(modnet_fixtures: Path, pipeline_vectors: dict[str, np.ndarray]) -> None:
    runner = ModelRunner(load_modnet(modnet_fixtures / "random_weights.ckpt"), torch.device("cpu"), Precision.FP32)
    case = "portrait_test1"
    image = pipeline_vectors[f"{case}__image_uint8"]
    size = tuple(pipeline_vectors[f"{case}__resized_shape"].tolist()[2:])
    x = torch.nn.functional.interpolate(runner.normalize([image]), size=size, mode="area")
    np.testing.assert_allclose(x.numpy(), pipeline_vectors[f"{case}__model_input"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        runner.forward(x).numpy(), pipeline_vectors[f"{case}__matte_model_res"], rtol=0, atol=ATOL
    )


def test_portrait_fixture_decodes_to_the_recorded_pixels(
    modnet_fixtures: Path, pipeline_vectors: dict[str, np.ndarray]
) -> None:
    from common.imaging import decode_image

    decoded = decode_image(modnet_fixtures / "portrait_test1.jpg", max_pixels=50_000_000, min_side=32)
    expected = pipeline_vectors["portrait_test1__image_uint8"]
    assert decoded.rgb.shape == expected.shape
    assert np.abs(decoded.rgb.astype(int) - expected.astype(int)).max() <= 2
