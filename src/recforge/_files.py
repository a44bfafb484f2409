"""Atomic file and directory writes: what recforge writes appears whole or not at all.

A file is written to a hidden temporary name beside its target, flushed to disk and renamed
over the target (then the directory is fsync'd, so the rename itself survives a crash); a
directory is filled under a hidden temporary name, every file and the directory fsync'd, then
renamed into place. A process killed at any point leaves at most a hidden temporary entry,
never a half-written target.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "commit_dir",
    "fsync_path",
    "fsync_tree",
    "replace_atomic",
    "save_npy_atomic",
    "temporary_dir",
    "temporary_name",
    "write_json_atomic",
    "write_text_atomic",
]


def temporary_name(path: Path) -> Path:
    """A fresh hidden name beside ``path`` (``.<name>.<hex>.tmp``) to write before renaming."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def replace_atomic(tmp: Path, path: Path) -> None:
    """fsync ``tmp``, rename it over ``path`` and fsync the directory."""
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent, directory=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name, fsync, rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        tmp.write_text(text)
        replace_atomic(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON (strict: no NaN; sorted keys, indented) atomically to ``path``."""
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n")


def save_npy_atomic(path: Path, array: np.ndarray, durable: bool = True) -> None:
    """``np.save`` to a temporary name (no pickle) and rename over ``path``: readers see the old
    or the new array. ``durable`` fsyncs first (a cache that can be rebuilt can skip it)."""
    tmp = temporary_name(path)
    try:
        with tmp.open("wb") as handle:
            np.save(handle, array, allow_pickle=False)
        if durable:
            replace_atomic(tmp, path)
        else:
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
    fsync_path(final.parent, directory=True)
    return True


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every directory, deepest first."""
    for path in root.rglob("*"):
        if path.is_file():
            fsync_path(path)
    for path in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        fsync_path(path, directory=True)
    fsync_path(root, directory=True)


def fsync_path(path: Path, directory: bool = False) -> None:
    """fsync a file, or a directory (its entries: a rename into it becomes durable)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
