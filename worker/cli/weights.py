"""``backdrop weights``: fetch and verify the MODNet checkpoint.

The commands are defined with the downloader in ``pretrained.fetch``, which ``python -m pretrained.fetch``
also runs, so that both entry points are one command with one set of flags.
"""

from __future__ import annotations

from pretrained.fetch import weights

__all__ = ["weights"]
