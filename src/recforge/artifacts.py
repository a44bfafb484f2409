"""Versioned model artifacts: build, publish atomically, roll back, prune.

Layout under ``<home>/models/``::

    versions/<version>/manifest.json     format version, created, model, params, data window,
                                         metrics, config hash, list sizes, sha256 of every file
    versions/<version>/model/            the model (``Recommender.save``: .npy + JSON)
    versions/<version>/lists/            precomputed top-K, loadable with mmap_mode="r"
                                         (the format is :mod:`recforge.lists`'s)
    versions/<version>/status.json       candidate | published | rejected | retired, with reason
    CURRENT                              the published version's name
    journal.jsonl                        every publish and rollback, oldest first

A version is written under a temporary name, every file fsync'd, then renamed into place, so a
reader never sees a half-written version. ``CURRENT`` is replaced by write-to-temporary + fsync
+ rename, so readers see the old or the new version, never neither. Versions are immutable
once written; only ``status.json`` changes.

**Nothing unverified is published.** :meth:`ModelRegistry.publish` and :meth:`~ModelRegistry.rollback`
first run :func:`recforge.version_checks.check_version` (checksums, list ranges, a smoke query)
and refuse a version that fails, leaving ``CURRENT`` as it was.

**History.** Each publish appends ``{"action": "publish", "version", "previous", "at"}`` to the
journal (fsync'd) before it replaces ``CURRENT``, each rollback ``{"action": "rollback", ...}``.
Replayed, the journal is a stack of published versions: a publish pushes, a rollback pops, so
rollback returns to the version published before the current one, whatever their names:
publish V2, publish V1, rollback is V2. A record whose ``CURRENT`` switch then failed (a full
disk) is recognised and passed over (:meth:`ModelRegistry.published_history`).

**Broken versions.** A version whose ``manifest.json`` or ``status.json`` cannot be read is listed
with status ``broken`` and the reason (naming the file), and skipped by rollback, the pipeline
and a server looking for a good version; it never makes the registry unusable.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from recforge.version_checks import ARTIFACT_FORMAT_VERSION, VersionCheckError, check_version, checksums

__all__ = [
    "ARTIFACT_FORMAT_VERSION",
    "Artifact",
    "ModelRegistry",
    "VersionCheckError",
    "VersionInfo",
]

Status = Literal["candidate", "published", "rejected", "retired"]
_VERSION_RE = re.compile(r"^v\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}$")
JOURNAL = "journal.jsonl"


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

    @property
    def broken(self) -> bool:
        """Whether its manifest or status could not be read (``reason`` says why)."""
        return self.status == "broken"

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
                "checksums": checksums(tmp),
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

    def publish(self, version: str, *, verify: bool = True) -> VersionInfo:
        """Make ``version`` the served one: verified first (:meth:`verify`; a failure raises
        :class:`VersionCheckError` and changes nothing), then ``CURRENT`` is replaced atomically
        and the publish journaled."""
        info = self.get(version)
        if verify:
            self.verify(info.version)
        previous = self.current()
        self._journal({"action": "publish", "version": info.version, "previous": previous})
        self._make_current(info.version)
        if previous and previous != info.version and (self.versions_dir / previous).exists():
            with contextlib.suppress(RecforgeError, OSError):  # a broken previous version stays broken
                self.set_status(previous, "retired", reason=f"replaced by {info.version}")
        return self.get(info.version)

    def reject(self, version: str, reason: str) -> None:
        self.set_status(version, "rejected", reason)

    def rollback(self, *, verify: bool = True) -> VersionInfo:
        """Publish again the version published before the current one (see the module doc),
        verified first; versions since deleted or broken are passed over."""
        current = self.current()
        if current is None:
            raise RecforgeError("nothing is published, nothing to roll back")
        target = self.rollback_target()
        if target is None:
            raise RecforgeError(f"no earlier published version to roll back to from {current}")
        if verify:
            self.verify(target)
        self._journal({"action": "rollback", "version": target, "previous": current})
        self._make_current(target)
        with contextlib.suppress(RecforgeError, OSError):
            self.set_status(current, "retired", reason=f"rolled back to {target}")
        return self.get(target)

    def rollback_target(self) -> str | None:
        """The version :meth:`rollback` would publish, or ``None``."""
        current = self.current()
        stack = self.published_history()
        if stack and stack[-1] == current:
            stack.pop()
        elif not stack:  # no journal (a registry from before it): the older statuses decide
            stack = [
                v.version
                for v in self.list()
                if current is not None and v.version < current and v.status in ("retired", "published")
            ]
        for version in reversed(stack):
            if version != current and self._usable(version):
                return version
        return None

    def published_history(self) -> list[str]:
        """The journal replayed: the stack of published versions, the current one last (a
        publish pushes, a rollback pops). A record is written before ``CURRENT`` changes, and
        counts only if it did: the next record names it as ``previous`` (the last one: it is
        ``CURRENT``); one whose switch failed (a full disk) is passed over."""
        records = self.journal()
        current = self.current()
        stack: list[str] = []
        for index, record in enumerate(records):
            after = records[index + 1].get("previous") if index + 1 < len(records) else current
            if after != record.get("version"):
                continue  # never became current
            version = str(record.get("version", ""))
            if record.get("action") == "publish":
                if not stack or stack[-1] != version:
                    stack.append(version)
            elif record.get("action") == "rollback":
                while stack and stack[-1] != version:
                    stack.pop()
                if not stack:
                    stack.append(version)
        return stack

    def journal(self) -> list[dict[str, Any]]:
        """Every publish and rollback, oldest first (a line left half-written by a crash is
        not one that happened, and is skipped)."""
        try:
            lines = (self.root / JOURNAL).read_bytes().splitlines()
        except FileNotFoundError:
            return []
        records = []
        for line in lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def verify(self, version: str) -> None:
        """Raise :class:`VersionCheckError` unless ``version`` passes every check of
        :func:`recforge.version_checks.check_version`."""
        info = self.get(version)
        check_version(self.versions_dir / info.version, info.manifest)

    def last_good(self, exclude: set[str] | frozenset[str] = frozenset()) -> str | None:
        """The most recently published version that passes :meth:`verify` (the publish history
        newest first, then versions that were ever published, newest first), ``exclude`` aside:
        what a server serves when the published version is corrupt."""
        seen = set(exclude)
        candidates = list(reversed(self.published_history()))
        candidates += [v.version for v in reversed(self.list()) if v.status in ("published", "retired")]
        for version in candidates:
            if version in seen:
                continue
            seen.add(version)
            try:
                self.verify(version)
            except (RecforgeError, OSError):
                continue
            return version
        return None

    def _usable(self, version: str) -> bool:
        try:
            return not self.get(version).broken
        except RecforgeError:  # deleted (pruned) since it was published
            return False

    def _make_current(self, version: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.root / "CURRENT", version + "\n")
        self.set_status(version, "published")

    def _journal(self, record: dict[str, Any]) -> None:
        """Append one record to the journal, fsync'd, under a lock."""
        line = json.dumps({**record, "at": _now()}, sort_keys=True) + "\n"
        path = self.root / JOURNAL
        with open(self.root / ".journal.lock", "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            created = not path.exists()
            with path.open("ab") as handle:
                handle.write(line.encode())
                handle.flush()
                os.fsync(handle.fileno())
            if created:
                fsync_path(self.root, directory=True)

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
        """All complete versions, oldest first; unreadable ones with status ``broken``."""
        out = []
        for path in self._version_dirs():
            try:
                out.append(self.get(path.name))
            except RecforgeError as error:
                out.append(VersionInfo(path.name, "broken", {}, str(error)))
        return out

    def get(self, version: str) -> VersionInfo:
        """One version; :class:`RecforgeError` naming the file when it cannot be read."""
        path = self._path(version)
        manifest = _read_json(path / "manifest.json")
        status = _read_json(path / "status.json")
        if not isinstance(status.get("status"), str):
            raise RecforgeError(f"{path / 'status.json'}: no status")
        return VersionInfo(path.name, status["status"], manifest, str(status.get("reason", "")))

    def open(self, version: str | None = None, verify: bool = False) -> Artifact:
        """Load a version (default: the published one), arrays memory-mapped.

        ``verify`` runs every check of :func:`recforge.version_checks.check_version` first.
        """
        name = version or self.current()
        if name is None:
            raise RecforgeError(f"no published model under {self.root}")
        path = self._path(name)
        manifest = _read_json(path / "manifest.json")
        if manifest.get("format_version") != ARTIFACT_FORMAT_VERSION:
            raise VersionCheckError(f"model {name} has unsupported format {manifest.get('format_version')!r}")
        if verify:
            check_version(path, manifest)
        try:
            model = Recommender.load(path / "model", mmap=True)
            lists = load_lists(path / "lists", str(manifest.get("item_source") or "factors"))
        except (ValueError, OSError, KeyError) as error:
            raise VersionCheckError(
                f"model {name} cannot be loaded: {' '.join(str(error).split())}"
            ) from None
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

    def resolve(self, name: str) -> str:
        """A version's full name from what a person types: ``latest`` (the newest version),
        ``published`` (the served one), ``previous`` (the one published before it, where
        ``rollback`` goes), or any unique prefix of a version name."""
        versions = [path.name for path in self._version_dirs()]
        if name == "latest":
            if not versions:
                raise RecforgeError(f"no model versions under {self.versions_dir}")
            return versions[-1]
        if name == "published":
            current = self.current()
            if current is None:
                raise RecforgeError(f"nothing is published under {self.root}")
            return current
        if name == "previous":
            target = self.rollback_target()
            if target is None:
                raise RecforgeError(f"no earlier published version to roll back to from {self.current()}")
            return target
        matches = [v for v in versions if v.startswith(name)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RecforgeError(
                f"no model version {name!r} under {self.versions_dir} (names: latest, published, previous, "
                "or a version or its unique prefix; recforge models list shows them)"
            )
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise RecforgeError(f"{name!r} matches {len(matches)} versions ({shown}); give more of the name")

    def _path(self, version: str) -> Path:
        if not _VERSION_RE.match(version):
            raise RecforgeError(f"not a model version name: {version!r}")
        path = self.versions_dir / version
        if not path.is_dir():
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


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; :class:`RecforgeError` naming the file otherwise."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecforgeError(f"{path}: missing") from None
    except (ValueError, OSError) as error:
        raise RecforgeError(f"{path}: not valid JSON ({' '.join(str(error).split())})") from None
    if not isinstance(value, dict):
        raise RecforgeError(f"{path}: not a JSON object")
    return value


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True))
