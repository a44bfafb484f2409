"""Versioned model artifacts: build, publish atomically, roll back, prune.

Layout under ``<home>/models/``::

    versions/<version>/manifest.json     format version, created, model, params, data window,
                                         metrics, config hash, list sizes, sha256 of every file
    versions/<version>/model/            the model (``Recommender.save``: .npy + JSON)
    versions/<version>/lists/            precomputed top-K, loadable with mmap_mode="r"
                                         (the format is :mod:`recforge.lists`'s)
    versions/<version>/status.json       candidate | published | rejected | retired, with reason
    CURRENT                              the published version's name

A version is written under a temporary name, every file fsync'd, then renamed into place, so a
reader never sees a half-written version. ``CURRENT`` is replaced by write-to-temporary + fsync
+ rename, so readers see the old or the new version, never neither. Versions are immutable
once written; only ``status.json`` changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from recforge._files import fsync_path, fsync_tree, write_json_atomic, write_text_atomic
from recforge.errors import RecforgeError
from recforge.lists import Lists, load_lists, save_lists
from recforge.models.base import Recommender

__all__ = [
    "ARTIFACT_FORMAT_VERSION",
    "Artifact",
    "ModelRegistry",
    "VersionInfo",
]

ARTIFACT_FORMAT_VERSION = 1
Status = Literal["candidate", "published", "rejected", "retired"]
_VERSION_RE = re.compile(r"^v\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}$")


@dataclass
class VersionInfo:
    """One version as the registry lists it."""

    version: str
    status: str
    manifest: dict[str, Any]
    reason: str = ""

    @property
    def created(self) -> str:
        return str(self.manifest.get("created", ""))

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.manifest.get("metrics", {}))

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "status": self.status, "reason": self.reason, **self.manifest}


@dataclass
class Artifact:
    """An opened version: the model and its precomputed lists, arrays memory-mapped."""

    version: str
    path: Path
    manifest: dict[str, Any]
    model: Recommender
    user_ids: np.ndarray
    user_scores: np.ndarray
    item_ids: np.ndarray
    item_scores: np.ndarray
    popular_ids: np.ndarray
    popular_scores: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)
    #: per-category user lists (``[catalog] category_lists``), by category name
    categories: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def lists(self) -> Lists:
        """The six arrays as one :class:`~recforge.lists.Lists`."""
        return Lists(
            (self.user_ids, self.user_scores),
            (self.item_ids, self.item_scores),
            (self.popular_ids, self.popular_scores),
            str(self.manifest.get("item_source") or "factors"),
            self.categories,
        )


class ModelRegistry:
    """The model versions under ``<home>/models``."""

    def __init__(self, home: str | Path) -> None:
        self.root = Path(home) / "models"
        self.versions_dir = self.root / "versions"

    # writing -------------------------------------------------------------------------------
    def create(
        self,
        model: Recommender,
        lists: Lists,
        *,
        metrics: dict[str, Any] | None = None,
        data_window: dict[str, Any] | None = None,
        config_hash: str = "",
        extra: dict[str, Any] | None = None,
    ) -> VersionInfo:
        """Write a new version (status ``candidate``) of ``model`` and its precomputed ``lists``
        (indexed by the model's user / item indices) atomically and return it."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        version = _new_version_name()
        tmp = self.versions_dir / f".tmp-{version}"
        try:
            model.save(tmp / "model")
            lists.check(len(model.users_), len(model.items_))
            save_lists(tmp / "lists", lists)
            manifest = {
                "format_version": ARTIFACT_FORMAT_VERSION,
                "version": version,
                "created": _now(),
                "model": model.name,
                "params": json.loads(json.dumps(model.get_params(), default=str)),
                "n_users": len(model.users_),
                "n_items": len(model.items_),
                "k_users": lists.k_users,
                "k_items": lists.k_items,
                "category_lists": {name: int(ids.shape[1]) for name, (ids, _) in lists.categories.items()},
                "item_source": lists.item_source,
                "data_window": data_window or {},
                "metrics": metrics or {},
                "config_hash": config_hash,
                "extra": extra or {},
                "checksums": _checksums(tmp),
            }
            _write_json(tmp / "manifest.json", manifest)
            _write_json(tmp / "status.json", {"status": "candidate", "reason": "", "at": _now()})
            fsync_tree(tmp)
            final = self.versions_dir / version
            os.rename(tmp, final)
            fsync_path(self.versions_dir, directory=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(version)

    def set_status(self, version: str, status: Status, reason: str = "") -> None:
        path = self._path(version)
        write_json_atomic(path / "status.json", {"status": status, "reason": reason, "at": _now()})

    def publish(self, version: str) -> VersionInfo:
        """Make ``version`` the served one: ``CURRENT`` is replaced atomically."""
        info = self.get(version)
        previous = self.current()
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.root / "CURRENT", info.version + "\n")
        self.set_status(info.version, "published")
        if previous and previous != info.version and (self.versions_dir / previous).exists():
            self.set_status(previous, "retired", reason=f"replaced by {info.version}")
        return self.get(info.version)

    def reject(self, version: str, reason: str) -> None:
        self.set_status(version, "rejected", reason)

    def rollback(self) -> VersionInfo:
        """Publish the most recent earlier version that was published before the current one."""
        current = self.current()
        if current is None:
            raise RecforgeError("nothing is published, nothing to roll back")
        earlier = [
            v
            for v in self.list()
            if v.version < current and v.status in ("retired", "published") and v.version != current
        ]
        if not earlier:
            raise RecforgeError(f"no earlier published version to roll back to from {current}")
        target = earlier[-1]
        self.publish(target.version)
        self.set_status(current, "retired", reason=f"rolled back to {target.version}")
        return self.get(target.version)

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest ``keep`` versions; never the published one. Returns the deleted."""
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        current = self.current()
        versions = [v.version for v in self.list()]
        doomed = [v for v in versions[:-keep] if v != current]
        for version in doomed:
            trash = self.versions_dir / f".trash-{version}"
            os.rename(self.versions_dir / version, trash)
            shutil.rmtree(trash, ignore_errors=True)
        for leftover in self.versions_dir.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        return doomed

    # reading -------------------------------------------------------------------------------
    def current(self) -> str | None:
        """The published version's name, or ``None``."""
        try:
            name = (self.root / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def list(self) -> list[VersionInfo]:
        """All complete versions, oldest first."""
        return [self.get(path.name) for path in self._version_dirs()]

    def get(self, version: str) -> VersionInfo:
        path = self._path(version)
        manifest = json.loads((path / "manifest.json").read_text())
        status = json.loads((path / "status.json").read_text())
        return VersionInfo(path.name, status["status"], manifest, status.get("reason", ""))

    def open(self, version: str | None = None, verify: bool = False) -> Artifact:
        """Load a version (default: the published one), arrays memory-mapped.

        ``verify`` checks every file's sha256 against the manifest first.
        """
        name = version or self.current()
        if name is None:
            raise RecforgeError(f"no published model under {self.root}")
        path = self._path(name)
        manifest = json.loads((path / "manifest.json").read_text())
        if manifest.get("format_version") != ARTIFACT_FORMAT_VERSION:
            raise RecforgeError(f"model {name} has unsupported format {manifest.get('format_version')!r}")
        if verify:
            actual, expected = _checksums(path), manifest["checksums"]
            if actual != expected:
                bad = sorted(k for k in actual.keys() | expected.keys() if actual.get(k) != expected.get(k))
                raise RecforgeError(f"model {name} is corrupt: checksum mismatch in {', '.join(bad)}")
        model = Recommender.load(path / "model", mmap=True)
        lists = load_lists(path / "lists", str(manifest.get("item_source") or "factors"))
        return Artifact(
            name,
            path,
            manifest,
            model,
            *lists.users,
            *lists.items,
            *lists.popular,
            categories=lists.categories,
        )

    def _path(self, version: str) -> Path:
        if not _VERSION_RE.match(version):
            raise RecforgeError(f"not a model version name: {version!r}")
        path = self.versions_dir / version
        if not (path / "manifest.json").exists():
            raise RecforgeError(f"no model version {version} under {self.versions_dir}")
        return path

    def _version_dirs(self) -> Iterator[Path]:
        if not self.versions_dir.exists():
            return iter(())
        return iter(
            sorted(p for p in self.versions_dir.iterdir() if _VERSION_RE.match(p.name) and p.is_dir())
        )


# helpers -------------------------------------------------------------------------------------
def _new_version_name() -> str:
    """``vYYYYMMDDTHHMMSS.ffffffZ-xxxxxx``: sorts by creation time; the suffix avoids collisions."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"v{stamp}-{secrets.token_hex(3)}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _checksums(root: Path) -> dict[str, str]:
    """sha256 of every file of a version but its manifest and status."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in ("manifest.json", "status.json"):
            continue
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        out[rel] = digest.hexdigest()
    return out


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True))
