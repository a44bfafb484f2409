"""The served model versions, and hot reload: switch versions without failing a request.

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

**Experiments.** While an experiment runs (:mod:`recforge.online.experiments`), the holder also
keeps a :class:`Routing`: each arm's :class:`ServedModel` (an arm that follows ``current`` is
the published one; a pinned version is loaded once, memory-mapped like any other, so a second
version costs page cache rather than copies), and a request for a user is answered from that
user's arm (``holder.served(user_id)``), fold-in and fallbacks included. The same poll that
watches ``CURRENT`` watches the experiment book: starting or stopping an experiment, and a
publish (for ``current`` arms), rebuild the routing; a publish while an arm is pinned is logged,
and each impression records the version that answered, so nothing changes silently. An arm
whose version cannot be loaded stops the routing (everyone is served the published version,
recorded without an arm) until it loads.

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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from recforge._time import parse_time, to_us
from recforge.artifacts import Artifact, ModelRegistry
from recforge.catalog import CatalogStore
from recforge.errors import RecforgeError
from recforge.models.base import Recommender
from recforge.online.experiments import CURRENT, Experiment, ExperimentBook
from recforge.online.recorder import ImpressionLog
from recforge.serving.ids import IdIndex
from recforge.serving.live_catalog import LiveCatalog
from recforge.serving.ranking import Ranker
from recforge.serving.stores import ListStore

__all__ = [
    "ModelHolder",
    "Routing",
    "ServedModel",
    "data_cutoff_us",
    "data_read_us",
    "load_served_model",
]

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
    #: the catalog over this version's items (availability, categories, new arrivals)
    catalog: LiveCatalog
    #: exact ranking over the catalog's items
    ranker: Ranker
    #: When the version's training data was read from the event store (microseconds since the
    #: epoch); ``None`` when not recorded. Deletions after it are not reflected in the version.
    read_us: int | None = None
    loaded_at: float = field(default_factory=time.time)
    #: Where answers are recorded as impressions (``None``: not recorded).
    impressions: ImpressionLog | None = None
    #: The experiment and arm this view of the version answers for (``None`` outside one).
    experiment: str | None = None
    arm: str | None = None

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


def load_served_model(
    artifact: Artifact,
    open_lists: Callable[[Artifact], ListStore],
    *,
    impressions: ImpressionLog | None = None,
    catalog: CatalogStore | None = None,
) -> ServedModel:
    """Everything about ``artifact`` (verified already) a request needs, built and warmed
    before first use (verification read every file, so its pages are in the page cache); the
    ``catalog`` store's items are read over its item space."""
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
        impressions=impressions,
        read_us=data_read_us(artifact.manifest),
        catalog=LiveCatalog(model, items, catalog),
        ranker=Ranker(model),
    )
    if len(model.items_):  # compile and page in the fold-in path before the first request
        model.recommend_for_history(np.zeros(1, dtype=np.int32), np.ones(1, dtype=np.float32), k=1)
    return served


@dataclass(frozen=True)
class Routing:
    """A running experiment and the view of a version each arm answers from."""

    experiment: Experiment
    control: ServedModel
    treatment: ServedModel

    def pick(self, user_id: str) -> ServedModel:
        """The arm of ``user_id`` (sticky: a hash of the user and the experiment's name)."""
        return self.treatment if self.experiment.arm(user_id) == "treatment" else self.control


def _arms(routing: Routing | None) -> tuple[object, ...] | None:
    if routing is None:
        return None
    return (routing.experiment, routing.control.version, routing.treatment.version)


class ModelHolder:
    """The current :class:`ServedModel`, an experiment's :class:`Routing`, and the thread that
    reloads them."""

    def __init__(
        self,
        registry: ModelRegistry,
        open_lists: Callable[[Artifact], ListStore],
        *,
        catalog: CatalogStore | None = None,
        poll_seconds: float = 1.0,
        on_load: Callable[[ServedModel | None, ServedModel], None] | None = None,
        on_failure: Callable[[str, BaseException], None] | None = None,
        experiments: ExperimentBook | None = None,
        impressions: ImpressionLog | None = None,
        on_routing: Callable[[Routing | None], None] | None = None,
    ) -> None:
        self.registry = registry
        self.open_lists = open_lists
        self.catalog = catalog
        self.poll_seconds = poll_seconds
        self.on_load = on_load
        self.on_failure = on_failure
        self.experiments = experiments
        self.impressions = impressions
        self.on_routing = on_routing
        self.current: ServedModel | None = None
        #: What ``CURRENT`` named at the last check (``current`` may differ: see the module doc).
        self.published: str | None = None
        self.routing: Routing | None = None
        self.last_error: str | None = None
        self._failed: tuple[str, float] | None = None
        self._heal_warned = -RETRY_SECONDS
        self._pinned: dict[str, ServedModel] = {}
        self._book: tuple[int, int] | str | None = "unread"
        self._wanted = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def served(self, user_id: str | None = None) -> ServedModel | None:
        """The version that answers ``user_id``: their arm while an experiment runs, else (and
        for requests without a user) the published one."""
        routing = self.routing
        if routing is not None and user_id is not None:
            return routing.pick(user_id)
        return self.current

    def cutoff_us(self) -> int:
        """The earliest data cutoff of the versions served: events after it are fresh for at
        least one of them."""
        served = [self.current] if self.current is not None else []
        routing = self.routing
        if routing is not None:
            served += [routing.control, routing.treatment]
        return min((s.cutoff_us for s in served), default=NO_CUTOFF)

    def catalogs(self) -> list[LiveCatalog]:
        """The live catalogs of the versions served (the published one first), each once."""
        served = [self.current] if self.current is not None else []
        routing = self.routing
        if routing is not None:
            served += [routing.control, routing.treatment]
        return list({id(s.catalog): s.catalog for s in served}.values())

    def check(self) -> bool:
        """Load the published version if it is not the one served, and follow the experiment
        book; returns whether the published version swapped."""
        with self._lock:  # one loader at a time (the watcher, or a test calling check())
            swapped = self._check_current()
            self._check_experiment(swapped)
            return swapped

    def _check_current(self) -> bool:
        try:
            name = self.registry.current()
        except OSError as error:
            self._fail("CURRENT", error)
            return False
        self.published = name
        current = self.current
        if name is None or (current is not None and current.version == name):
            return False
        served = self._load(name)
        if served is None:
            return self._fall_back(name) if current is None else False
        self.last_error = None
        self._swap(current, served)
        return True

    def _load(self, name: str) -> ServedModel | None:
        """Verify and load version ``name``; ``None`` (logged, counted) when it fails or failed
        recently (retried after :data:`RETRY_SECONDS`)."""
        if self._failed is not None and self._failed[0] == name and time.monotonic() < self._failed[1]:
            return None
        started = time.perf_counter()
        try:
            artifact = self.registry.open(name, verify=True)
            served = load_served_model(
                artifact, self.open_lists, impressions=self.impressions, catalog=self.catalog
            )
            served.catalog.refresh()  # the changes made while it loaded
        except Exception as error:  # a bad version must not take the server down
            self._failed = (name, time.monotonic() + RETRY_SECONDS)
            self._fail(name, error)
            return None
        if self._failed is not None and self._failed[0] == name:
            self._failed = None
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
        except Exception as error:
            log.error("no good model version to fall back to: %s", error)
            return False
        served = None if name is None else self._load(name)
        if served is None:
            return False
        log.warning("the published model %s failed verification; serving %s instead", failed, name)
        self._swap(None, served)
        return True

    def _check_experiment(self, published: bool) -> None:
        """Rebuild the routing when the book changed, a publish happened, or an arm's version
        has yet to load."""
        if self.experiments is None:
            return
        stamp = self.experiments.stamp()
        if stamp == self._book and not published and (self.routing is not None or not self._wanted):
            return
        try:
            experiment = self.experiments.running()
        except RecforgeError as error:
            self._fail("experiments", error)
            return
        self._book = stamp
        self._wanted = experiment is not None
        previous = self.routing
        routing, self._pinned = (None, {}) if experiment is None else self._route(experiment)
        self.routing = routing
        if _arms(routing) != _arms(previous):
            self._announce(previous, routing, published)
        elif published and routing is not None:
            log.warning(
                "published %s; experiment %s keeps serving control %s and treatment %s",
                self.current.version if self.current else None,
                routing.experiment.name,
                routing.control.version,
                routing.treatment.version,
            )

    def _route(self, experiment: Experiment) -> tuple[Routing | None, dict[str, ServedModel]]:
        """The experiment's routing (``None`` while an arm's version fails to load), and the
        versions loaded for pinned arms."""
        views, pinned = [], {}
        for arm in ("control", "treatment"):
            spec = experiment.spec(arm)
            if spec == CURRENT or (self.current is not None and self.current.version == spec):
                base = self.current
            else:
                base = self._pinned.get(spec) or self._load(spec)
                if base is not None:
                    pinned[spec] = base
            if base is None:
                log.error(
                    "experiment %s: the %s arm's version %s is not loaded; not routing",
                    experiment.name,
                    arm,
                    spec,
                )
                return None, pinned
            views.append(replace(base, experiment=experiment.name, arm=arm))
        return Routing(experiment, views[0], views[1]), pinned

    def _announce(self, previous: Routing | None, routing: Routing | None, published: bool) -> None:
        if routing is None:
            if previous is not None:
                log.info(
                    "experiment %s no longer routed; serving the published version", previous.experiment.name
                )
        else:
            log.info(
                "experiment %s: control serves %s, treatment %s (share %.3g)%s",
                routing.experiment.name,
                routing.control.version,
                routing.treatment.version,
                routing.experiment.share,
                " after a publish" if published else "",
            )
        if self.on_routing is not None:
            self.on_routing(routing)

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
        """Start polling ``CURRENT`` (and the experiment book) every ``poll_seconds``."""
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
