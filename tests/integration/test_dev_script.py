"""``./dev`` run from another folder: paths on its command line and its default output are the caller's.

The virtual environment is a stand-in whose ``python`` and ``backdrop`` are this test run's own and whose
``pip`` only records its calls, so ``./dev``'s set-up never reaches the network.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
DEV = REPO / "dev"
BIN = Path(sys.executable).parent
DEFAULT_WEIGHTS = REPO / "pretrained" / "modnet_photographic_portrait_matting.ckpt"

RECORDER = """#!{python}
import json, os, sys
with open({log!r}, "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}) + "\\n")
"""


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def stand_in_venv(root: Path, *, backdrop: str | None = None) -> Path:
    """A venv for ``./dev``: python and (unless ``backdrop`` is given) backdrop run the real ones."""
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    _script(venv / "bin" / "python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    _script(venv / "bin" / "pip", RECORDER.format(python=sys.executable, log=str(root / "pip.jsonl")))
    _script(venv / "bin" / "backdrop", backdrop or f'#!/bin/sh\nexec "{BIN / "backdrop"}" "$@"\n')
    return venv


def run_dev(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DEV), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKDROP_")}
    return {**env, "BACKDROP_TORCH_THREADS": "2", **extra}


def test_replace_from_another_folder_reads_and_writes_there(tmp_path: Path, official_format_checkpoint: Path) -> None:
    elsewhere = tmp_path / "photos"
    elsewhere.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (80, 64, 3), dtype=np.uint8)).save(elsewhere / "photo.jpg")
    venv = stand_in_venv(tmp_path)

    env = _env(BACKDROP_VENV=str(venv), BACKDROP_MODEL_PATH=str(official_format_checkpoint))

    result = run_dev("replace", "photo.jpg", cwd=elsewhere, env=env)

    assert result.returncode == 0, result.stderr
    with Image.open(elsewhere / "out" / "photo.jpg") as image:
        assert image.size == (64, 80)
    assert not (REPO / "out" / "photo.jpg").exists()


@pytest.mark.parametrize("command", ["replace", "serve"])
def test_defaults_stay_in_the_repository_and_the_command_runs_where_it_was_called(tmp_path: Path, command: str) -> None:
    calls = tmp_path / "backdrop.jsonl"
    venv = stand_in_venv(tmp_path, backdrop=RECORDER.format(python=sys.executable, log=str(calls)))
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()

    result = run_dev(command, "photo.jpg", cwd=elsewhere, env=_env(BACKDROP_VENV=str(venv)))

    assert result.returncode == 0, result.stderr
    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    last = recorded[-1]
    assert last["argv"] == [command, "photo.jpg"]
    assert Path(last["cwd"]) == elsewhere
    assert Path(last["env"]["BACKDROP_MODEL_PATH"]) == DEFAULT_WEIGHTS
    if command == "serve":
        assert Path(last["env"]["BACKDROP_DATA_DIR"]) == REPO / "data"
    else:
        assert "BACKDROP_DATA_DIR" not in last["env"]
    # Missing weights are fetched to the repository's pretrained/ folder, not the caller's.
    assert all(call["argv"] == ["weights", "fetch"] for call in recorded[:-1])
    assert len(recorded) == (1 if DEFAULT_WEIGHTS.exists() else 2)
