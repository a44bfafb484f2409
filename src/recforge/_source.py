"""Where this ``recforge`` is imported from, for the Python processes it starts (Spark's
workers, the impression writer), which must import the same one."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["child_pythonpath", "source_root"]


def source_root() -> str:
    """The directory ``recforge`` is imported from (``src`` in a checkout)."""
    return str(Path(__file__).resolve().parents[1])


def child_pythonpath() -> str:
    """``PYTHONPATH`` for a child Python: :func:`source_root` first, then this process's own."""
    return os.pathsep.join(p for p in (source_root(), os.environ.get("PYTHONPATH", "")) if p)
