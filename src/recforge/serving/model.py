"""The served model version, and hot reload: switch versions without failing a request.

A :class:`ServedModel` is everything a request needs about one published version, built
completely before it is used: the artifact (model and lists memory-mapped), its list store,
id indices for users and items, the data cutoff, and a fold-in already run once (numba kernels
compiled). :class:`ModelHolder` keeps one reference to the current :class:`ServedModel`; a
request reads that reference once and uses that version to the end, so a swap never changes a
request half-way. A background thread polls the registry's ``CURRENT`` pointer; when it names
another version, the new version is loaded fully and the reference replaced in one assignment
(atomic in Python). The old version stays alive while requests still hold it, then is freed (its
files may be pruned meanwhile: mapped pages stay readable after an unlink).

**Nothing unverified is served.** A version is verified before it is swapped in
(:func:`recforge.version_checks.check_version`: checksums, list ranges, a smoke query; reading
every file once also brings it into the page cache). A version that fails is logged, counted and
skipped, and the server keeps answering from the version it has; at start-up, with nothing
served yet, it falls back to the newest good version of the publish history
(:meth:`~recforge.artifacts.ModelRegistry.last_good`). ``published`` (what ``CURRENT`` names)
and ``current`` (what is served) then differ, and ``/readyz`` and ``/v1/model`` say so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from recforge._time import parse_time, to_us
from recforge.artifacts import Artifact, ModelRegistry
from recforge.errors import RecforgeError
from recforge.models.base import Recommender
from recforge.serving.ids import IdIndex
from recforge.serving.stores import ListStore

__all__ = ["ModelHolder", "ServedModel", "data_cutoff_us", "data_read_us", "load_served_model"]

log = logging.getLogger("recforge.serving")

#: Before any representable event: a model without a recorded data window treats every
#: posted event as fresh.
NO_CUTOFF = -(2**62)
#: A version that failed to load is tried again after this many seconds.
RETRY_SECONDS = 30.0


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
    #: When the version's training data was read from the event store (microseconds since the
    #: epoch); ``None`` when not recorded. Deletions after it are not reflected in the version.
    read_us: int | None = None
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


def data_read_us(manifest: dict[str, Any]) -> int | None:
    """When a version's data were read (``data_window.read_at``), or ``None``."""
    value = (manifest.get("data_window") or {}).get("read_at")
    if not value:
        return None
    try:
        return to_us(parse_time(str(value)))
    except RecforgeError:
        return None


def load_served_model(artifact: Artifact, open_lists: Callable[[Artifact], ListStore]) -> ServedModel:
    """Everything about ``artifact`` (verified already) a request needs, built and warmed
    before first use."""
    model = artifact.model
    served = ServedModel(
        version=artifact.version,
        manifest=artifact.manifest,
        model=model,
        lists=open_lists(artifact),
        users=IdIndex(model.users_),
        items=IdIndex(model.items_, keep_names=True),
        cutoff_us=data_cutoff_us(artifact.manifest),
        item_source=str(artifact.manifest.get("item_source") or "factors"),
        read_us=data_read_us(artifact.manifest),
    )
    if len(model.items_):  # compile and page in the fold-in path before the first request
        model.recommend_for_history(np.zeros(1, dtype=np.int32), np.ones(1, dtype=np.float32), k=1)
    return served


class ModelHolder:
    """The current :class:`ServedModel` and the thread that reloads it."""

    def __init__(
        self,
        registry: ModelRegistry,
        open_lists: Callable[[Artifact], ListStore],
        *,
        poll_seconds: float = 1.0,
        on_load: Callable[[ServedModel | None, ServedModel], None] | None = None,
        on_failure: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.registry = registry
        self.open_lists = open_lists
        self.poll_seconds = poll_seconds
        self.on_load = on_load
        self.on_failure = on_failure
        self.current: ServedModel | None = None
        #: What ``CURRENT`` named at the last check (``current`` may differ: see the module doc).
        self.published: str | None = None
        self.last_error: str | None = None
        self._failed: tuple[str, float] | None = None
        self._heal_warned = -RETRY_SECONDS
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
            self.published = name
            current = self.current
            if name is None or (current is not None and current.version == name):
                return False
            if self._failed is not None and self._failed[0] == name and time.monotonic() < self._failed[1]:
                return False  # failed recently: retried after RETRY_SECONDS
            try:
                served = self._load(name)
            except Exception as error:  # a bad version must not take the server down
                self._failed = (name, time.monotonic() + RETRY_SECONDS)
                self._fail(name, error)
                if current is None:
                    return self._fall_back(name)
                return False
            self._failed = None
            self.last_error = None
            self._swap(current, served)
            return True

    def _load(self, name: str) -> ServedModel:
        started = time.perf_counter()
        served = load_served_model(self.registry.open(name, verify=True), self.open_lists)
        log.info("verified and loaded model %s in %.2f s", name, time.perf_counter() - started)
        return served

    def _swap(self, old: ServedModel | None, new: ServedModel) -> None:
        self.current = new
        log.info("serving model %s%s", new.version, f", replacing {old.version}" if old else "")
        if self.on_load is not None:
            self.on_load(old, new)

    def _fall_back(self, failed: str) -> bool:
        """Nothing served yet and the published version is bad: serve the newest good one."""
        try:
            name = self.registry.last_good(exclude={failed})
            if name is None:
                return False
            served = self._load(name)
        except Exception as error:
            log.error("no good model version to fall back to: %s", error)
            return False
        log.warning("the published model %s failed verification; serving %s instead", failed, name)
        self._swap(None, served)
        return True

    @property
    def mismatch(self) -> str | None:
        """Why the served version is not the published one, or ``None`` when they agree."""
        served = self.current
        if served is None or self.published is None or served.version == self.published:
            return None
        why = f": {self.last_error}" if self.last_error else " (loading)"
        return f"serving {served.version}, not the published {self.published}{why}"

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

    def heal(self) -> bool:
        """Let the served version's list store restore what it lost (a restarted Redis);
        failures are logged at most every :data:`RETRY_SECONDS`."""
        served = self.current
        if served is None:
            return False
        try:
            healed = served.lists.heal()
        except Exception as error:  # the store is still down: try again at the next poll
            now = time.monotonic()
            if now - self._heal_warned > RETRY_SECONDS:
                self._heal_warned = now
                log.error("the list store of %s is not back yet: %s", served.version, error)
            return False
        if healed:
            log.warning("loaded the lists of %s into the list store again (it had lost them)", served.version)
        return healed

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check()
            self.heal()
