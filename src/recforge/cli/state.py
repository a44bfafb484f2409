"""What every command gets through ``ctx.obj``: the loaded settings and the ``--debug`` flag."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recforge.config import Config

__all__ = ["State"]


@dataclass
class State:
    """The global options, resolved once by the ``recforge`` callback."""

    config: Config
    debug: bool

    @property
    def home(self) -> Path:
        return Path(self.config.home)
