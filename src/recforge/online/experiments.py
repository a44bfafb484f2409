"""A/B experiments: two model versions side by side, each user sticky to one, and a verdict.

**Definition.** ``recforge experiments start NAME --control V1 --treatment V2 --share S``
writes the experiment to ``<home>/experiments/book.json`` (atomically, under a lock); each arm
names a version, or ``current`` (the published one, following publishes). One experiment runs
at a time; ``stop`` ends it (the record stays, for its report); a name is never reused, since
it salts the assignment.

**Assignment.** User ``u`` is in the treatment arm when ``h(name, u) < share``, where ``h`` is
the first 8 bytes of BLAKE2b of ``name + "\\x1f" + u`` read as a fraction of ``2**64``: sticky
(the same user always gets the same arm), independent across experiments, and needing no state.

**Verdict.** The unit is the user, not the impression, so a heavy user counts once: in each
arm, ``n`` = users shown at least one list, ``x`` = those with at least one attributed event
(``click``) or attributed conversion (``convert``). With rates ``p_c = x_c / n_c`` and
``p_t = x_t / n_t``, the report gives the difference ``d = p_t - p_c``, its 95% confidence
interval ``d ± 1.96 sqrt(p_c (1 - p_c) / n_c + p_t (1 - p_t) / n_t)`` and the two-sided p-value
of the pooled two-proportion z-test, ``z = d / sqrt(p (1 - p) (1/n_c + 1/n_t))`` with
``p = (x_c + x_t) / (n_c + n_t)``, ``p-value = erfc(|z| / sqrt 2)``. A winner (the arm with the
higher rate on ``[experiments] metric``) is declared only when both arms have at least
``min_users`` users, the pooled counts have at least 10 successes and 10 failures (so the normal
approximation holds), and the p-value is below ``alpha``.

**A/A.** :func:`aa_test` re-splits recorded traffic at random (the same hash, salted ``aa-<r>``)
``repetitions`` times and counts how often a winner would be declared: with nothing to find,
about ``alpha`` of the time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge._files import write_json_atomic
from recforge._time import iso, parse_time
from recforge._validation import check_in, check_number, check_positive_int
from recforge.artifacts import ModelRegistry
from recforge.config import Config, ExperimentsConfig
from recforge.errors import RecforgeError
from recforge.online.attribution import attribute
from recforge.online.rates import Outcomes, group_rates, outcomes, read_window

__all__ = [
    "ARMS",
    "CURRENT",
    "Experiment",
    "ExperimentBook",
    "aa_test",
    "arm_of",
    "compare",
    "experiment_report",
    "verdict",
]

ARMS = ("control", "treatment")
#: An arm that serves whichever version is published.
CURRENT = "current"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_Z95 = 1.959963984540054
#: Pooled successes and failures a verdict needs (the normal approximation of the z-test).
MIN_EACH = 10


@dataclass(frozen=True)
class Experiment:
    """One experiment as the book keeps it (times ISO 8601 UTC; ``stopped`` is ``None`` while it
    runs)."""

    name: str
    control: str
    treatment: str
    share: float
    started: str
    stopped: str | None = None

    @property
    def running(self) -> bool:
        return self.stopped is None

    def arm(self, user_id: str) -> str:
        """``"treatment"`` or ``"control"`` for ``user_id`` (see the module docstring)."""
        return arm_of(user_id, self.name, self.share)

    def spec(self, arm: str) -> str:
        """The version (or :data:`CURRENT`) that ``arm`` serves."""
        return self.treatment if arm == "treatment" else self.control


def _fraction(name: str, user_id: str) -> float:
    digest = hashlib.blake2b(f"{name}\x1f{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def arm_of(user_id: str, name: str, share: float) -> str:
    """The arm of ``user_id`` in experiment ``name`` with treatment share ``share``."""
    return "treatment" if _fraction(name, user_id) < share else "control"


class ExperimentBook:
    """The experiments of a home: ``<home>/experiments/book.json``."""

    def __init__(self, home: str | Path) -> None:
        self.home = Path(home)
        self.root = self.home / "experiments"
        self.path = self.root / "book.json"

    def all(self) -> list[Experiment]:
        """Every experiment, oldest first."""
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as error:
            raise RecforgeError(f"{self.path} cannot be read: {error}") from None
        return [Experiment(**entry) for entry in raw.get("experiments", [])]

    def get(self, name: str) -> Experiment:
        for experiment in self.all():
            if experiment.name == name:
                return experiment
        raise RecforgeError(f"no experiment named {name!r} under {self.root}")

    def running(self) -> Experiment | None:
        """The experiment now running, if any."""
        return next((e for e in self.all() if e.running), None)

    def stamp(self) -> tuple[int, int] | None:
        """A cheap token that changes whenever the book does (``None``: no book yet)."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_ino

    def start(
        self, name: str, control: str, treatment: str, share: float, *, now: datetime | None = None
    ) -> Experiment:
        """Start an experiment (see the module docstring for what each argument may be)."""
        if not _NAME.match(name):
            raise RecforgeError(
                f"experiment name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting "
                "with a letter or digit"
            )
        try:
            check_number("share", share, low=0.0, high=1.0, low_inclusive=False)
        except ValueError as error:
            raise RecforgeError(str(error)) from None
        if share >= 1.0:
            raise RecforgeError("share must be below 1 (the control arm needs users too)")
        registry = ModelRegistry(self.home)
        for arm, spec in (("control", control), ("treatment", treatment)):
            _check_spec(registry, arm, spec)
        with self._locked():
            experiments = self.all()
            if any(e.name == name for e in experiments):
                raise RecforgeError(f"an experiment named {name!r} exists already; choose another name")
            running = next((e for e in experiments if e.running), None)
            if running is not None:
                raise RecforgeError(f"experiment {running.name!r} is running; stop it first")
            experiment = Experiment(
                name, control, treatment, float(share), iso(now or datetime.now(UTC)) or ""
            )
            self._write([*experiments, experiment])
        return experiment

    def stop(self, name: str, *, now: datetime | None = None) -> Experiment:
        with self._locked():
            experiments = self.all()
            found = [e for e in experiments if e.name == name]
            if not found:
                raise RecforgeError(f"no experiment named {name!r} under {self.root}")
            if not found[0].running:
                raise RecforgeError(f"experiment {name!r} was stopped at {found[0].stopped}")
            stopped = replace(found[0], stopped=iso(now or datetime.now(UTC)))
            self._write([stopped if e.name == name else e for e in experiments])
        return stopped

    def _write(self, experiments: list[Experiment]) -> None:
        write_json_atomic(self.path, {"experiments": [asdict(e) for e in experiments]})

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _check_spec(registry: ModelRegistry, arm: str, spec: str) -> None:
    if spec == CURRENT:
        if registry.current() is None:
            raise RecforgeError(f"--{arm} current: no version is published yet")
        return
    try:
        info = registry.get(spec)
    except RecforgeError as error:
        raise RecforgeError(f"--{arm}: {error}") from None
    if info.status == "rejected":
        raise RecforgeError(f"--{arm}: version {spec} was rejected ({info.reason}); serve another")


# statistics ----------------------------------------------------------------------------------
def compare(
    control_users: int, control_hits: int, treatment_users: int, treatment_hits: int
) -> dict[str, Any]:
    """Rates, difference (treatment - control) with its 95% confidence interval, and the
    two-sided p-value of the pooled two-proportion z-test (``None`` where undefined)."""
    n_c, x_c, n_t, x_t = control_users, control_hits, treatment_users, treatment_hits
    out: dict[str, Any] = {
        "control": {"users": n_c, "hits": x_c, "rate": x_c / n_c if n_c else None},
        "treatment": {"users": n_t, "hits": x_t, "rate": x_t / n_t if n_t else None},
        "difference": None,
        "ci95": None,
        "z": None,
        "p_value": None,
    }
    if not n_c or not n_t:
        return out
    p_c, p_t = x_c / n_c, x_t / n_t
    difference = p_t - p_c
    spread = math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
    out["difference"] = difference
    out["ci95"] = [difference - _Z95 * spread, difference + _Z95 * spread]
    pooled = (x_c + x_t) / (n_c + n_t)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    if se > 0:
        z = difference / se
        out["z"] = z
        out["p_value"] = math.erfc(abs(z) / math.sqrt(2))
    return out


def verdict(comparison: dict[str, Any], settings: ExperimentsConfig) -> tuple[str | None, str]:
    """The winning arm (or ``None``) and why, by the rules of the module docstring."""
    _check_settings(settings)
    n_c, n_t = comparison["control"]["users"], comparison["treatment"]["users"]
    if min(n_c, n_t) < settings.min_users:
        return None, (
            f"not enough users yet: control {n_c:,}, treatment {n_t:,}; each arm needs "
            f"{settings.min_users:,} ([experiments] min_users)"
        )
    hits = comparison["control"]["hits"] + comparison["treatment"]["hits"]
    misses = n_c + n_t - hits
    if min(hits, misses) < MIN_EACH:
        return None, f"too few users with and without a hit ({hits:,} and {misses:,}; {MIN_EACH} each needed)"
    p_value = comparison["p_value"]
    if p_value is None or p_value >= settings.alpha:
        shown = "undefined" if p_value is None else f"{p_value:.3g}"
        return None, f"no significant difference (p = {shown}, alpha = {settings.alpha:g})"
    winner = "treatment" if comparison["difference"] > 0 else "control"
    return winner, f"{winner} wins (p = {p_value:.3g} < alpha = {settings.alpha:g})"


def _check_settings(settings: ExperimentsConfig) -> None:
    try:
        check_in("experiments.metric", settings.metric, ("convert", "click"))
        check_number("experiments.alpha", settings.alpha, low=0.0, high=1.0, low_inclusive=False)
        check_positive_int("experiments.min_users", settings.min_users)
    except ValueError as error:
        raise RecforgeError(str(error)) from None


def user_hits(
    impressions: pa.Table, found: Outcomes, members: np.ndarray
) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """The distinct users of the impressions ``members`` (those with a user), and per user whether
    any of their impressions was clicked, and converted."""
    users = impressions.column("user_id").take(pa.array(members))
    valid = np.asarray(users.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    members = members[valid]
    encoded = pc.dictionary_encode(users.filter(pa.array(valid))).combine_chunks()
    code = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    n = len(encoded.dictionary)
    clicked = np.bincount(code, weights=found.clicked[members], minlength=n) > 0
    converted = np.bincount(code, weights=found.converted[members], minlength=n) > 0
    return encoded.dictionary, clicked, converted


# reports -------------------------------------------------------------------------------------
def experiment_report(
    home: str | Path, config: Config, name: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """An experiment's arms (rates, users, the versions each served and when), the comparison
    of both metrics, and the verdict on ``[experiments] metric``."""
    settings = config.experiments
    _check_settings(settings)
    experiment = ExperimentBook(home).get(name)
    now = now or datetime.now(UTC)
    window = timedelta(hours=settings.attribution_hours)
    start = parse_time(experiment.started)
    end = None if experiment.stopped is None else parse_time(experiment.stopped) + window
    impressions, events = read_window(home, start, end)
    attribution = attribute(impressions, events, round(window.total_seconds() * 1e6))
    found = outcomes(impressions.num_rows, events, attribution, settings.conversion_types)
    in_experiment = _mask(pc.equal(impressions.column("experiment"), name))
    arms: dict[str, Any] = {}
    counts: dict[str, tuple[int, int, int]] = {}
    for arm in ARMS:
        members = np.flatnonzero(in_experiment & _mask(pc.equal(impressions.column("arm"), arm)))
        users, clicked, converted = user_hits(impressions, found, members)
        counts[arm] = (len(users), int(clicked.sum()), int(converted.sum()))
        rates = group_rates(impressions, found, members)
        arms[arm] = {
            "serves": experiment.spec(arm),
            "users": len(users),
            "click_users": int(clicked.sum()),
            "click_rate": clicked.mean() if len(users) else None,
            "convert_users": int(converted.sum()),
            "convert_rate": converted.mean() if len(users) else None,
            **{key: rates[key] for key in ("impressions", "ctr", "conversion_rate", "events", "by_position")},
            "served": _served(impressions, members),
        }
    comparisons = {
        metric: compare(
            counts["control"][0], counts["control"][j], counts["treatment"][0], counts["treatment"][j]
        )
        for j, metric in ((1, "click"), (2, "convert"))
    }
    winner, reason = verdict(comparisons[settings.metric], settings)
    return {
        "experiment": {**asdict(experiment), "status": "running" if experiment.running else "stopped"},
        "as_of": iso(now),
        "metric": settings.metric,
        "alpha": settings.alpha,
        "min_users": settings.min_users,
        "attribution_hours": settings.attribution_hours,
        "conversion_types": list(settings.conversion_types),
        "published_now": ModelRegistry(home).current(),
        "arms": arms,
        "comparisons": comparisons,
        "winner": winner,
        "verdict": reason,
    }


def _served(impressions: pa.Table, members: np.ndarray) -> list[dict[str, Any]]:
    """Which versions answered the impressions ``members``, from when to when, in time order."""
    if not len(members):
        return []
    picked = impressions.take(pa.array(members))
    table = pa.table({"version": picked.column("version"), "timestamp": picked.column("timestamp")})
    grouped = table.group_by("version").aggregate(
        [("timestamp", "min"), ("timestamp", "max"), ("timestamp", "count")]
    )
    rows = [
        {"version": version, "first": iso(first), "last": iso(last), "impressions": count}
        for version, first, last, count in zip(
            grouped.column("version").to_pylist(),
            grouped.column("timestamp_min").to_pylist(),
            grouped.column("timestamp_max").to_pylist(),
            grouped.column("timestamp_count").to_pylist(),
            strict=True,
        )
    ]
    return sorted(rows, key=lambda row: row["first"])


def aa_test(
    home: str | Path,
    config: Config,
    *,
    repetitions: int = 100,
    share: float = 0.5,
    since: datetime | None = None,
    experiment: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """Re-split the recorded users at random ``repetitions`` times (salts ``aa-0``, ``aa-1``,
    ...) and count the splits in which a winner would be declared on ``[experiments] metric``.
    ``experiment`` / ``version`` restrict the impressions used (all since ``since`` otherwise)."""
    settings = config.experiments
    _check_settings(settings)
    check_positive_int("repetitions", repetitions)
    impressions, events = read_window(home, since)
    attribution = attribute(impressions, events, round(settings.attribution_hours * 3_600e6))
    found = outcomes(impressions.num_rows, events, attribution, settings.conversion_types)
    keep = np.ones(impressions.num_rows, dtype=bool)
    if experiment is not None:
        keep &= _mask(pc.equal(impressions.column("experiment"), experiment))
    if version is not None:
        keep &= _mask(pc.equal(impressions.column("version"), version))
    users, clicked, converted = user_hits(impressions, found, np.flatnonzero(keep))
    hit = converted if settings.metric == "convert" else clicked
    names = users.to_pylist()
    winners, p_values = 0, []
    for r in range(repetitions):
        salt = f"aa-{r}"
        treated = np.fromiter((_fraction(salt, u) < share for u in names), dtype=bool, count=len(names))
        comparison = compare(
            int((~treated).sum()), int(hit[~treated].sum()), int(treated.sum()), int(hit[treated].sum())
        )
        winner, _ = verdict(comparison, settings)
        winners += winner is not None
        p_values.append(comparison["p_value"])
    return {
        "repetitions": repetitions,
        "share": share,
        "metric": settings.metric,
        "alpha": settings.alpha,
        "users": len(names),
        "hit_rate": float(hit.mean()) if len(names) else None,
        "impressions": int(keep.sum()),
        "winners": winners,
        "no_winner": repetitions - winners,
        "p_values": p_values,
    }


def _mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
