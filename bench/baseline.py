"""The post-processing as it was before the strip-wise rewrite, loaded from git for side-by-side runs.

``baseline_pipeline()`` returns ``common/pipeline.py`` of ``BASELINE_COMMIT``, executed against that
commit's ``common/compositing.py`` and ``common/backgrounds.py`` (whole-image float arrays, both
blur-fusion passes at full resolution), so a benchmark can time or measure it beside today's code in
the same process or run. Nothing of it is kept in the source tree.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The last commit with the whole-image post-processing.
BASELINE_COMMIT = "5a4a04e"
_MODULES = ("common.compositing", "common.backgrounds", "common.pipeline")
_SHARED_TYPES = {"common.backgrounds": ("BackgroundKind", "BackgroundSpec")}


def _source(commit: str, module: str) -> str:
    path = module.replace(".", "/") + ".py"
    return subprocess.run(
        ["git", "-C", str(REPO), "show", f"{commit}:{path}"], check=True, capture_output=True, text=True
    ).stdout


def baseline_pipeline(commit: str = BASELINE_COMMIT) -> types.ModuleType:
    """The baseline ``common.pipeline``, its compositing and backgrounds bound to the baseline's own."""
    import common.pipeline  # noqa: F401  (today's modules and their dependencies load first)

    saved = {name: sys.modules[name] for name in _MODULES}
    loaded: dict[str, types.ModuleType] = {}
    try:
        for name in _MODULES:
            module = types.ModuleType(f"baseline_{name.replace('.', '_')}")
            module.__file__ = f"{commit}:{name}"
            sys.modules[name] = module  # later baseline modules import the earlier ones
            sys.modules[module.__name__] = module  # dataclasses look their module up by name
            exec(compile(_source(commit, name), module.__file__, "exec"), module.__dict__)
            # Options build today's background specs: the baseline's code must see today's types.
            for shared in _SHARED_TYPES.get(name, ()):
                setattr(module, shared, getattr(saved[name], shared))
            loaded[name] = module
    finally:
        sys.modules.update(saved)
    return loaded["common.pipeline"]
