"""What every command gets through ``ctx.obj``: the loaded settings and the ``--debug`` flag,
and the home they work in (read-only commands need it to exist; writing ones create it)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from recforge.config import Config
from recforge.errors import RecforgeError

__all__ = ["State", "existing_home"]


@dataclass
class State:
    """The global options, resolved once by the ``recforge`` callback."""

    config: Config
    debug: bool

    @property
    def home(self) -> Path:
        return Path(self.config.home)

    def existing_home(self) -> Path:
        """The home, which must exist (a command that only reads it)."""
        return existing_home(self.home)

    def writable_home(self) -> Path:
        """The home, created (and said so on stderr) when it does not exist yet."""
        if not self.home.exists():
            self.home.mkdir(parents=True)
            print(f"recforge: created a new home at {self.home.resolve()}", file=sys.stderr)
        return self.home


def existing_home(home: Path) -> Path:
    """``home`` when it is a directory; a one-line error naming it (and how to set it) otherwise,
    so that a mistyped ``--home`` is not silently taken for an empty one."""
    if not home.is_dir():
        raise RecforgeError(
            f"no recforge home at {home.resolve()}: check --home (or RECFORGE_HOME, or home in the config); "
            "recforge ingest FILE creates one"
        )
    return home
