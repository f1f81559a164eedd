"""The API never imports torch, the worker never imports Flask, and common/ imports neither."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def imported_after(modules: list[str]) -> set[str]:
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in modules)
        + "print(','.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return set(result.stdout.strip().split(","))


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        (["api.app", "api.routes.jobs", "api.routes.files", "api.routes.health"], {"torch"}),
        (
            [
                "common.imaging",
                "common.pipeline",
                "common.jobs",
                "common.storage",
                "common.queue",
                "common.compositing",
            ],
            {"torch", "flask"},
        ),
        (["worker.celery_app", "worker.tasks", "worker.service", "worker.cli", "worker.cli.serve"], {"flask"}),
        (["pretrained.fetch"], {"torch", "flask"}),
        # The CLI is in the API image too (for `backdrop keys`): only `replace` without --server loads torch.
        (["worker.cli", "worker.cli.keys", "worker.cli.remote", "worker.cli.serve"], {"torch", "flask"}),
    ],
)
def test_import_boundaries(modules: list[str], forbidden: set[str]) -> None:
    loaded = imported_after(modules)
    assert modules[0].split(".")[0] in loaded
    assert not (loaded & forbidden), f"{modules} pulled in {loaded & forbidden}"


def test_the_api_app_builds_without_torch() -> None:
    code = (
        "import sys\n"
        "from common.settings import Settings\n"
        "from api.app import create_app\n"
        "app = create_app(Settings(redis_url='redis://127.0.0.1:1/0', data_dir=sys.argv[1]))\n"
        "assert 'torch' not in sys.modules\n"
        "print(sorted(rule.rule for rule in app.url_map.iter_rules()))\n"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as data_dir:
        result = subprocess.run(
            [sys.executable, "-c", code, data_dir], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 0, result.stderr
    assert "/v1/jobs" in result.stdout and "/v1/jobs/<job_id>" in result.stdout
