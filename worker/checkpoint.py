"""Loading MODNet weights: the official checkpoint unchanged, plain state dicts, fp16 copies."""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from common.errors import InvalidCheckpoint, WeightsMissing
from pretrained.fetch import missing_weights_message
from worker.modnet import MODNet

_WRAPPER_PREFIX = "module."
_BACKBONE = "backbone."
_BACKBONE_ALIAS = "lr_branch.backbone."
_NESTED_KEYS = ("state_dict", "model_state_dict", "model")
_MAX_LISTED = 8
# torch's "Unsupported global" error names the refused class; the rest of its message is advice we do not give.
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_GET_THE_WEIGHTS = (
    "Download the official weights again with `backdrop weights fetch --force`, "
    "or set BACKDROP_MODEL_PATH to a MODNet checkpoint"
)


def _unreadable(path: Path, exc: BaseException) -> InvalidCheckpoint:
    """Our own account of why torch could not read ``path``. torch's messages advise loading the file
    again with ``weights_only=False``, which would run whatever code the file holds: never repeated."""
    try:
        size = f"{path.stat().st_size:,} bytes"
    except OSError:
        size = "size unknown"
    head = f"cannot read {path} as a torch checkpoint ({size})"
    refused = _REFUSED_GLOBAL.search(str(exc)) if isinstance(exc, pickle.UnpicklingError) else None
    if refused:
        reason = (
            f"it holds Python objects other than tensors ({refused.group(1)}), which Backdrop never loads, "
            "so it is not a MODNet checkpoint"
        )
    else:
        detail = str(exc).strip().splitlines()[0].split(". ")[0].rstrip(".") if str(exc).strip() else ""
        detail = "" if "weights_only" in detail else detail
        reason = "truncated, corrupt or not a checkpoint" + (f" ({type(exc).__name__}: {detail})" if detail else "")
    return InvalidCheckpoint(f"{head}: {reason}. {_GET_THE_WEIGHTS}")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely (``weights_only``) into a flat name -> tensor dict."""
    path = Path(path)
    if not path.is_file():
        raise WeightsMissing(missing_weights_message(path))
    try:
        # The official file is the legacy (non-zip) container: mmap cannot be used for it.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # whatever a damaged file makes the unpickler raise, it is unreadable
        raise _unreadable(path, exc) from exc
    for key in _NESTED_KEYS:
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InvalidCheckpoint(
            f"{path} does not hold a state dict of tensors (found {type(obj).__name__}). {_GET_THE_WEIGHTS}"
        )
    return dict(obj)


def normalize_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the DataParallel prefix, restore a missing alias of the shared backbone, cast to float32."""
    normalized: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        name = name.removeprefix(_WRAPPER_PREFIX)
        normalized[name] = tensor.float() if tensor.is_floating_point() else tensor
    # The backbone is one module registered under two names; a file may carry only one copy.
    # When both are present the lr_branch copy wins, as it does for the official model.
    for name in list(normalized):
        if name.startswith(_BACKBONE):
            normalized.setdefault(_BACKBONE_ALIAS + name.removeprefix(_BACKBONE), normalized[name])
        elif name.startswith(_BACKBONE_ALIAS):
            normalized[_BACKBONE + name.removeprefix(_BACKBONE_ALIAS)] = normalized[name]
    return normalized


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _MAX_LISTED else "")


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise one InvalidCheckpoint naming missing, unexpected and mis-shaped keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if misshaped:
        problems.append(f"wrong shapes: {_listed(misshaped)}")
    if problems:
        raise InvalidCheckpoint(f"{source} is not a MODNet checkpoint; " + "; ".join(problems))


def load_modnet(path: str | Path, device: str | torch.device = "cpu") -> MODNet:
    """Build MODNet, load weights from ``path`` strictly, and return it in eval mode on ``device``."""
    state = normalize_state_dict(read_state_dict(path))
    model = MODNet()
    check_state_dict(model, state, str(path))
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    return model.to(device)


def save_official_format(model: MODNet, path: str | Path) -> None:
    """Write ``model`` the way the official checkpoint was written (DataParallel keys, legacy container)."""
    wrapped = {_WRAPPER_PREFIX + name: tensor for name, tensor in model.state_dict().items()}
    torch.save(wrapped, path, _use_new_zipfile_serialization=False)
