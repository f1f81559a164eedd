"""The ``backdrop`` command itself: its version, and one weights command behind both entry points."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from pretrained import fetch
from worker.cli import main


def test_version_is_the_package_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"backdrop {importlib.metadata.version('backdrop')}"


def test_backdrop_weights_is_the_command_of_pretrained_fetch() -> None:
    assert main.commands["weights"] is fetch.weights
    assert fetch.weights.commands["fetch"] is fetch.fetch_command
    flags = {opt for param in fetch.fetch_command.params for opt in param.opts}
    assert flags >= {"--dest", "--force", "--no-progress"}


def test_python_m_pretrained_fetch_shows_the_same_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert fetch.main(["--help"]) == 0
    shown = capsys.readouterr().out
    assert fetch.MODULE_COMMAND in shown
    for flag in ("--dest", "--force", "--no-progress"):
        assert flag in shown
    assert fetch.main(["--no-such-flag"]) == 2


@pytest.mark.parametrize("flag", ["--dest", "--path"])
def test_verify_checks_the_given_file(tmp_path: Path, flag: str) -> None:
    other = tmp_path / "other.ckpt"
    other.write_bytes(b"not the checkpoint")
    result = CliRunner().invoke(main, ["weights", "verify", flag, str(other)])
    assert result.exit_code == 1
    assert f"{other} is missing or is not the official checkpoint" in result.stderr
