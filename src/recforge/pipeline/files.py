"""Atomic file and directory writes: what a stage writes appears whole or not at all.

A file is written to a hidden temporary name beside its target, flushed to disk and renamed
over the target; a directory is filled under a hidden temporary name, every file and the
directory fsync'd, then renamed into place. A process killed at any point leaves at most a
hidden temporary entry, never a half-written target.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

__all__ = ["commit_dir", "fsync_tree", "temporary_dir", "write_json_atomic"]


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON (strict: no NaN) to a temporary name, fsync, rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("w") as handle:
            json.dump(value, handle, indent=2, sort_keys=True, allow_nan=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def temporary_dir(final: Path) -> Path:
    """A fresh hidden directory beside ``final`` to fill before :func:`commit_dir`."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".tmp-{final.name}-{secrets.token_hex(4)}")
    tmp.mkdir()
    return tmp


def commit_dir(tmp: Path, final: Path) -> bool:
    """fsync ``tmp`` and rename it to ``final``. When ``final`` already exists (written by an
    earlier, equal attempt), ``tmp`` is deleted and ``False`` returned."""
    if final.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    fsync_tree(tmp)
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    _fsync(final.parent, directory=True)
    return True


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every directory, deepest first."""
    for path in root.rglob("*"):
        if path.is_file():
            _fsync(path)
    for path in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        _fsync(path, directory=True)
    _fsync(root, directory=True)


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
