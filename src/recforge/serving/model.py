"""The served model version, and hot reload: switch versions without failing a request.

A :class:`ServedModel` is everything a request needs about one published version, built
completely before it is used: the artifact (model and lists memory-mapped), its list store,
id indices for users and items, the data cutoff, and a fold-in already run once (numba kernels
compiled, files read into the page cache). :class:`ModelHolder` keeps one reference to the current
:class:`ServedModel`; a request reads that reference once and uses that version to the end,
so a swap never changes a request half-way. A background thread polls the registry's
``CURRENT`` pointer; when it names another version, the new version is loaded fully and the
reference replaced in one assignment (atomic in Python). The old version stays alive while
requests still hold it, then is freed (its files may be pruned meanwhile: mapped pages stay
readable after an unlink). A version that fails to load is logged, counted and skipped; the
server keeps answering from the version it has.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recforge.artifacts import Artifact, ModelRegistry
from recforge.catalog import CatalogStore
from recforge.models.base import Recommender
from recforge.serving.ids import IdIndex
from recforge.serving.live_catalog import LiveCatalog
from recforge.serving.ranking import Ranker
from recforge.serving.stores import ListStore

__all__ = ["ModelHolder", "ServedModel", "data_cutoff_us", "load_served_model", "prefetch"]

log = logging.getLogger("recforge.serving")

#: Before any representable event: a model without a recorded data window treats every
#: posted event as fresh.
NO_CUTOFF = -(2**62)
#: A version that failed to load is tried again after this many seconds.
RETRY_SECONDS = 30.0
#: Bytes of a new version read into the page cache before it is served.
PREFETCH_BYTES = 4 << 30


@dataclass(frozen=True)
class ServedModel:
    """One loaded version, ready to answer."""

    version: str
    manifest: dict[str, Any]
    model: Recommender
    lists: ListStore
    users: IdIndex
    items: IdIndex
    cutoff_us: int
    item_source: str
    #: the catalog over this version's items (availability, categories, new arrivals)
    catalog: LiveCatalog
    #: exact ranking over the catalog's items
    ranker: Ranker
    loaded_at: float = field(default_factory=time.time)

    @property
    def public_manifest(self) -> dict[str, Any]:
        """The manifest as ``GET /v1/model`` shows it (file checksums left out)."""
        return {key: value for key, value in self.manifest.items() if key != "checksums"}


def data_cutoff_us(manifest: dict[str, Any]) -> int:
    """The end of a version's training data (microseconds since the epoch): the data window's
    ``end`` when it was cut, else its newest event (``last``); :data:`NO_CUTOFF` when neither
    is recorded. Events after it are fresh."""
    window = manifest.get("data_window") or {}
    for key in ("end", "last"):
        value = window.get(key)
        if value:
            try:
                when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return round(when.timestamp() * 1_000_000)
    return NO_CUTOFF


def load_served_model(
    artifact: Artifact, open_lists: Callable[[Artifact], ListStore], catalog: CatalogStore | None = None
) -> ServedModel:
    """Everything about ``artifact`` a request needs, built and warmed before first use; the
    ``catalog`` store's items are read over its item space."""
    prefetch(artifact.path)
    model = artifact.model
    items = IdIndex(model.items_, keep_names=True)
    served = ServedModel(
        version=artifact.version,
        manifest=artifact.manifest,
        model=model,
        lists=open_lists(artifact),
        users=IdIndex(model.users_),
        items=items,
        cutoff_us=data_cutoff_us(artifact.manifest),
        item_source=str(artifact.manifest.get("item_source") or "factors"),
        catalog=LiveCatalog(model, items, catalog),
        ranker=Ranker(model),
    )
    if len(model.items_):  # compile and page in the fold-in path before the first request
        model.recommend_for_history(np.zeros(1, dtype=np.int32), np.ones(1, dtype=np.float32), k=1)
    return served


def prefetch(path: Path, limit: int = PREFETCH_BYTES) -> None:
    """Read a version's files once so their pages are in the page cache before requests map
    them (a page fault on the event loop is a disk read in the middle of a request). Reads
    happen in the loading thread, without the GIL; beyond ``limit`` bytes the kernel is only
    advised to read ahead."""
    budget = limit
    buffer = bytearray(1 << 22)
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        with file.open("rb", buffering=0) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > budget:
                if hasattr(os, "posix_fadvise"):
                    os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_WILLNEED)
                continue
            budget -= size
            while handle.readinto(buffer):
                pass


class ModelHolder:
    """The current :class:`ServedModel` and the thread that reloads it."""

    def __init__(
        self,
        registry: ModelRegistry,
        open_lists: Callable[[Artifact], ListStore],
        *,
        catalog: CatalogStore | None = None,
        poll_seconds: float = 1.0,
        on_load: Callable[[ServedModel | None, ServedModel], None] | None = None,
        on_failure: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.registry = registry
        self.open_lists = open_lists
        self.catalog = catalog
        self.poll_seconds = poll_seconds
        self.on_load = on_load
        self.on_failure = on_failure
        self.current: ServedModel | None = None
        self.last_error: str | None = None
        self._failed: tuple[str, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Load the published version if it is not the one served; returns whether it swapped."""
        with self._lock:  # one loader at a time (the watcher, or a test calling check())
            try:
                name = self.registry.current()
            except OSError as error:
                self._fail("CURRENT", error)
                return False
            current = self.current
            if name is None or (current is not None and current.version == name):
                return False
            if self._failed is not None and self._failed[0] == name and time.monotonic() < self._failed[1]:
                return False  # failed recently: retried after RETRY_SECONDS
            started = time.perf_counter()
            try:
                served = load_served_model(self.registry.open(name), self.open_lists, self.catalog)
                served.catalog.refresh()  # the changes made while it loaded
            except Exception as error:  # a bad version must not take the server down
                self._failed = (name, time.monotonic() + RETRY_SECONDS)
                self._fail(name, error)
                return False
            self.current = served
            self._failed = None
            self.last_error = None
            log.info(
                "serving model %s (loaded in %.2f s%s)",
                name,
                time.perf_counter() - started,
                f", replacing {current.version}" if current else "",
            )
            if self.on_load is not None:
                self.on_load(current, served)
            return True

    def _fail(self, name: str, error: BaseException) -> None:
        self.last_error = f"{name}: {error}"
        log.error("could not load model %s: %s", name, error)
        if self.on_failure is not None:
            self.on_failure(name, error)

    def start(self) -> None:
        """Start polling ``CURRENT`` every ``poll_seconds``."""
        if self._thread is not None or self.poll_seconds <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="recforge-model-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check()
