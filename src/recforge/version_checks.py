"""What a model version must pass before it is published or served.

:func:`check_version` runs, on a version directory and its manifest:

1. **format**: the manifest's ``format_version`` is one this recforge reads;
2. **checksums**: every file the manifest lists is there with its sha256, and no other file is
   (a truncated, edited or half-copied version fails here, naming the files);
3. **lists**: the six precomputed arrays load, have the shapes and dtypes of the model's
   vocabularies, and every item id is padding (``-1``) or an item index (an out-of-range id would
   make every request that reads it fail);
4. **a smoke query**: the model loads and answers what a server asks of it: a user's list, an
   item's similar items, the popular list, and a fold-in from a one-item history.

Any failure raises :class:`VersionCheckError` with one line saying what is wrong. The checks read
every file of the version once (the checksums), which also brings it into the page cache before
a server maps it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from recforge.errors import RecforgeError
from recforge.lists import load_lists
from recforge.models.base import Recommender

__all__ = ["ARTIFACT_FORMAT_VERSION", "VersionCheckError", "check_version", "checksums"]

ARTIFACT_FORMAT_VERSION = 1
#: Files of a version that are not checksummed: the manifest holds the checksums, and the status
#: changes over the version's life.
UNSUMMED = ("manifest.json", "status.json")


class VersionCheckError(RecforgeError):
    """A model version that must not be published or served, and why."""


def checksums(root: Path) -> dict[str, str]:
    """sha256 of every file of a version but its manifest and status (and the temporary files
    an atomic rewrite of the status leaves for an instant), by relative path."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in UNSUMMED or any(rel.startswith(f".{name}.") for name in UNSUMMED):
            continue
        digest = hashlib.sha256()
        try:
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except FileNotFoundError:  # gone since listed: reported as missing if it was expected
            continue
        out[rel] = digest.hexdigest()
    return out


def check_version(path: Path, manifest: dict[str, Any], *, smoke: bool = True) -> None:
    """Run the checks of the module doc on the version at ``path``; ``smoke=False`` stops after
    the checksums and the lists."""
    name = path.name
    if manifest.get("format_version") != ARTIFACT_FORMAT_VERSION:
        raise VersionCheckError(f"model {name} has unsupported format {manifest.get('format_version')!r}")
    expected = manifest.get("checksums")
    if not isinstance(expected, dict) or not expected:
        raise VersionCheckError(f"model {name} is corrupt: its manifest lists no checksums")
    actual = checksums(path)
    if actual != expected:
        missing = sorted(expected.keys() - actual.keys())
        extra = sorted(actual.keys() - expected.keys())
        changed = sorted(k for k in actual.keys() & expected.keys() if actual[k] != expected[k])
        parts = [
            f"{label} {', '.join(files)}"
            for label, files in (
                ("missing", missing),
                ("checksum mismatch in", changed),
                ("unexpected", extra),
            )
            if files
        ]
        raise VersionCheckError(f"model {name} is corrupt: {'; '.join(parts)}")
    try:
        model = Recommender.load(path / "model", mmap=True)
        lists = load_lists(path / "lists", str(manifest.get("item_source") or "factors"))
        lists.check(len(model.users_), len(model.items_))
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise VersionCheckError(f"model {name} is corrupt: {_one_line(error)}") from None
    if smoke:
        _smoke(name, model, lists.arrays())


def _smoke(name: str, model: Recommender, arrays: dict[str, np.ndarray]) -> None:
    """The lookups and the fold-in a server makes, once each, on the first user and item."""
    n_items = len(model.items_)
    try:
        rows = [arrays["popular.ids"]]
        if len(model.users_):
            rows.append(np.asarray(arrays["users.ids"][0]))
        if n_items:
            rows.append(np.asarray(arrays["items.ids"][0]))
            ids, scores = model.recommend_for_history(
                np.zeros(1, dtype=np.int32), np.ones(1, np.float32), k=3
            )
            rows.append(np.asarray(ids))
            if len(ids) != len(scores):
                raise ValueError("a fold-in answered ids and scores of different lengths")
        model.items_.ids(np.concatenate([r[r >= 0] for r in rows]).astype(np.int64))
    except Exception as error:  # whatever a request would have hit
        raise VersionCheckError(f"model {name} fails a smoke query: {_one_line(error)}") from None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
