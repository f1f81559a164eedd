"""Loading weights: the official format, plain and fp16 state dicts, and clear errors for bad files."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from common.errors import InvalidCheckpoint, WeightsMissing
from worker.checkpoint import load_modnet, read_state_dict
from worker.modnet import MODNet


@pytest.fixture(scope="module")
def official_state(official_format_checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(official_format_checkpoint, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def sample() -> torch.Tensor:
    return torch.rand((1, 3, 64, 96), generator=torch.Generator().manual_seed(1)) * 2 - 1


def _matte(model: MODNet, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


def test_official_format_is_legacy_container_with_module_prefix(official_format_checkpoint: Path) -> None:
    head = official_format_checkpoint.read_bytes()[:2]
    assert head == b"\x80\x02"  # a pickle stream, not a zip archive
    state = read_state_dict(official_format_checkpoint)
    assert len(state) == 751 and all(k.startswith("module.") for k in state)


def test_load_returns_eval_model_with_the_file_weights(
    official_format_checkpoint: Path, official_state: dict[str, torch.Tensor], sample: torch.Tensor
) -> None:
    model = load_modnet(official_format_checkpoint)
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    key = "f_branch.conv_f.1.layers.0.weight"
    assert torch.equal(model.state_dict()[key], official_state["module." + key])
    matte = _matte(model, sample)
    assert matte.shape == (1, 1, 64, 96)
    assert matte.min() >= 0.0 and matte.max() <= 1.0


def test_plain_zip_and_fp16_state_dicts_load(
    tmp_path: Path,
    official_format_checkpoint: Path,
    official_state: dict[str, torch.Tensor],
    sample: torch.Tensor,
) -> None:
    reference = _matte(load_modnet(official_format_checkpoint), sample)

    plain = {k.removeprefix("module."): v for k, v in official_state.items()}
    torch.save(plain, tmp_path / "plain.pt")  # zip container, no prefix
    assert torch.equal(_matte(load_modnet(tmp_path / "plain.pt"), sample), reference)

    half = {k: v.half() if v.is_floating_point() else v for k, v in official_state.items()}
    torch.save(half, tmp_path / "half.pt")
    model = load_modnet(tmp_path / "half.pt")
    assert next(model.parameters()).dtype == torch.float32
    assert (_matte(model, sample) - reference).abs().max() < 2e-2


def test_single_backbone_copy_is_enough(
    tmp_path: Path,
    official_format_checkpoint: Path,
    official_state: dict[str, torch.Tensor],
    sample: torch.Tensor,
) -> None:
    deduplicated = {k: v for k, v in official_state.items() if not k.startswith("module.lr_branch.backbone.")}
    torch.save(deduplicated, tmp_path / "dedup.pt")
    reference = _matte(load_modnet(official_format_checkpoint), sample)
    assert torch.equal(_matte(load_modnet(tmp_path / "dedup.pt"), sample), reference)


def test_missing_and_unexpected_keys_are_named(tmp_path: Path, official_state: dict[str, torch.Tensor]) -> None:
    broken = dict(official_state)
    del broken["module.f_branch.conv_f.1.layers.0.bias"]
    broken["module.extra.weight"] = torch.zeros(3)
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(InvalidCheckpoint) as info:
        load_modnet(tmp_path / "broken.pt")
    message = str(info.value)
    assert "missing keys: f_branch.conv_f.1.layers.0.bias" in message
    assert "unexpected keys: extra.weight" in message


def test_wrong_shapes_are_named(tmp_path: Path, official_state: dict[str, torch.Tensor]) -> None:
    broken = dict(official_state)
    broken["module.f_branch.conv_f.1.layers.0.bias"] = torch.zeros(2)
    torch.save(broken, tmp_path / "shape.pt")
    with pytest.raises(InvalidCheckpoint, match=r"wrong shapes: f_branch.conv_f.1.layers.0.bias \(2,\) != \(1,\)"):
        load_modnet(tmp_path / "shape.pt")


@pytest.mark.parametrize("keep", [0, 100, 1_000_000])
def test_truncated_file_gives_one_clear_error(tmp_path: Path, official_format_checkpoint: Path, keep: int) -> None:
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(official_format_checkpoint.read_bytes()[:keep])
    with pytest.raises(InvalidCheckpoint, match=r"cannot read .*truncated\.ckpt as a torch checkpoint"):
        load_modnet(truncated)


def test_not_a_state_dict(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save([torch.zeros(1)], buffer)
    (tmp_path / "list.pt").write_bytes(buffer.getvalue())
    with pytest.raises(InvalidCheckpoint, match="does not hold a state dict"):
        load_modnet(tmp_path / "list.pt")


def test_missing_file_says_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissing) as info:
        load_modnet(tmp_path / "nowhere.ckpt")
    assert "nowhere.ckpt" in str(info.value)
    assert "backdrop weights fetch" in str(info.value)


def _numpy_in_a_checkpoint(path: Path) -> None:
    import numpy as np

    torch.save({"weight": np.zeros(3)}, path)  # loading it would need a non-tensor global


def _text(path: Path) -> None:
    path.write_text("this is a text file, not a checkpoint\n")


def _truncated_zip(path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(1000)}, buffer)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


@pytest.mark.parametrize("write", [_numpy_in_a_checkpoint, _text, _truncated_zip])
def test_unreadable_files_get_our_message_not_torchs_advice(tmp_path: Path, write: Callable[[Path], None]) -> None:
    path = tmp_path / "bad.ckpt"
    write(path)
    with pytest.raises(InvalidCheckpoint) as info:
        load_modnet(path)
    message = str(info.value)
    assert message.startswith(f"cannot read {path} as a torch checkpoint ({path.stat().st_size:,} bytes)")
    assert "weights_only" not in message and "trust" not in message and "safe_globals" not in message
    assert "backdrop weights fetch --force" in message
    assert "\n" not in message


def test_a_checkpoint_needing_other_objects_names_them(tmp_path: Path) -> None:
    path = tmp_path / "numpy.ckpt"
    _numpy_in_a_checkpoint(path)
    with pytest.raises(InvalidCheckpoint, match=r"holds Python objects other than tensors \(numpy\.\S+\)"):
        load_modnet(path)
