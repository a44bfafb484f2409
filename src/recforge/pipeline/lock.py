"""The pipeline lock: at most one process runs pipeline stages on a home at a time.

An exclusive ``fcntl.flock`` on a lock file. The kernel drops the lock when its holder exits,
however it exits (SIGKILL, a crash, a lost container), so a dead run never leaves the lock
stuck: there is no stale-lock cleanup to get wrong. The holder writes its pid into the file,
for the message that others see.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import IO

from recforge.config import Config
from recforge.errors import RecforgeError

__all__ = ["PipelineBusy", "PipelineLock", "lock_path"]


class PipelineBusy(RecforgeError):
    """Another process holds the pipeline lock."""


def lock_path(home: str | Path, config: Config) -> Path:
    """``[pipeline] lock_path``, or ``<home>/pipeline/pipeline.lock``."""
    configured = config.pipeline.lock_path
    return Path(configured) if configured else Path(home) / "pipeline" / "pipeline.lock"


class PipelineLock:
    """``with PipelineLock(path):`` holds the lock or raises :class:`PipelineBusy` at once
    (``blocking=False``, the default) or waits for it (``blocking=True``)."""

    def __init__(self, path: str | Path, *, blocking: bool = False) -> None:
        self.path = Path(path)
        self.blocking = blocking
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held for the lock's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise PipelineBusy(f"another pipeline run holds {self.path} (pid {holder})") from None
        except BaseException:
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        try:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        finally:
            handle.close()

    @property
    def held(self) -> bool:
        return self._handle is not None

    def __enter__(self) -> PipelineLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
