"""A closed-loop simulation: synthetic users with known tastes use a running server.

The users are those of a generated file (``recforge generate`` keeps their true tastes beside it,
:class:`~recforge.data.generate.Tastes`). Request ``j`` of a run:

1. draws a user ``u`` by activity (the generator's lognormal activity: heavy users come often);
2. asks ``GET /v1/users/{u}/recommendations?k=K`` and reads the items shown;
3. for the item ``i`` at position ``p`` (0 = first), with lift ``l = P(i | u) * n_items`` (how much
   likelier than a uniformly drawn item ``u``'s next event is on ``i``; ``P(i | u)`` is the
   generator's own next-event distribution), the user looks at the position with probability
   ``1 / log2(p + 2)``, then clicks with probability ``CLICK * l / (l + HALF)`` and, having
   clicked, buys with probability ``BUY * l / (l + HALF)``;
4. clicks are posted as ``view`` events and purchases as ``purchase`` events (timestamped when
   they happen, with the answer's ``recommendation_id``; ``untagged`` of them without it, to
   exercise attribution by time).

Draws are seeded by ``(seed, j)``: a run's users, and what each does with a given answer, are
the same every time. Requests go out from ``concurrency`` clients at once; events are posted
in batches while the run goes on, and all are acknowledged (durable) when it returns.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recforge.data.generate import Tastes, tastes_path
from recforge.errors import RecforgeError

__all__ = ["BUY", "CLICK", "HALF", "Simulation", "load_tastes", "simulate"]

#: Most a click on a looked-at item can be likely (for an item of unbounded lift), ...
CLICK = 0.1
#: ... most a purchase after a click can be, ...
BUY = 0.2
#: ... and the lift at which each is half of that: an item ten times likelier than a uniform
#: pick is clicked 5% of the times it is looked at, and bought after 10% of its clicks.
HALF = 10.0
#: Events posted per request at most.
_POST_BATCH = 2_000


@dataclass
class Simulation:
    """What a run did: requests, failures, shown items, clicks and purchases, and the same per
    arm (``experiment:arm``, or ``version`` outside an experiment)."""

    requests: int = 0
    failures: list[str] = field(default_factory=list)
    shown: int = 0
    clicks: int = 0
    purchases: int = 0
    events_posted: int = 0
    seconds: float = 0.0
    by_arm: dict[str, Counter[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failures": len(self.failures),
            "first_failures": self.failures[:3],
            "shown": self.shown,
            "clicks": self.clicks,
            "purchases": self.purchases,
            "events_posted": self.events_posted,
            "seconds": round(self.seconds, 2),
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else None,
            "by_arm": {arm: dict(counts) for arm, counts in sorted(self.by_arm.items())},
        }


def load_tastes(path: str | Path) -> Tastes:
    """The tastes at ``path``: a ``.tastes.npz``, or a generated events file beside which it lies."""
    path = Path(path)
    if not path.name.endswith(".npz"):
        path = tastes_path(path)
    if not path.exists():
        raise RecforgeError(f"{path}: no tastes file (recforge generate writes one beside its events)")
    return Tastes.load(path)


def _item_indices(names: list[str], n_items: int) -> np.ndarray:
    """Generator item names ``i<n>`` as indices (``-1``: not a generated item)."""
    out = np.full(len(names), -1, dtype=np.int64)
    for k, name in enumerate(names):
        if name[:1] == "i" and name[1:].isdigit() and int(name[1:]) < n_items:
            out[k] = int(name[1:])
    return out


def behave(
    tastes: Tastes, user: int, items: list[str], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Which shown items user ``user`` clicks, and buys (boolean arrays by position)."""
    index = _item_indices(items, tastes.n_items)
    known = index >= 0
    lift = np.zeros(len(items))
    if known.any():
        lift[known] = (
            tastes.next_item_probability(np.full(int(known.sum()), user), index[known]) * tastes.n_items
        )
    looked = rng.random(len(items)) < 1.0 / np.log2(np.arange(len(items)) + 2.0)
    appeal = lift / (lift + HALF)
    clicked = looked & (rng.random(len(items)) < CLICK * appeal)
    bought = clicked & (rng.random(len(items)) < BUY * appeal)
    return clicked, bought


def simulate(
    host: str,
    tastes: Tastes,
    requests: int,
    *,
    seed: int = 0,
    first: int = 0,
    k: int = 10,
    concurrency: int = 8,
    untagged: float = 0.0,
    api_key: str | None = None,
    timeout: float = 30.0,
) -> Simulation:
    """Run requests ``first .. first + requests - 1`` of the run seeded ``seed`` against the
    server at ``host`` (see the module docstring)."""
    if requests < 0 or concurrency < 1 or k < 1 or not 0.0 <= untagged <= 1.0:
        raise RecforgeError("requests must be >= 0, concurrency and k >= 1, untagged in [0, 1]")
    if not api_key:
        raise RecforgeError("posting events needs an API key (--api-key or RECFORGE_API_KEYS)")
    return asyncio.run(_run(host, tastes, requests, seed, first, k, concurrency, untagged, api_key, timeout))


def _users(tastes: Tastes, seed: int, stop: int) -> np.ndarray:
    """The users of requests ``0 .. stop - 1`` (drawn by activity)."""
    weights = np.cumsum(tastes.activity)
    draws = np.random.default_rng([seed, 0]).random(stop) * weights[-1]
    return np.minimum(np.searchsorted(weights, draws, side="right"), tastes.n_users - 1)


async def _run(
    host: str,
    tastes: Tastes,
    requests: int,
    seed: int,
    first: int,
    k: int,
    concurrency: int,
    untagged: float,
    api_key: str,
    timeout: float,
) -> Simulation:
    import httpx

    users = _users(tastes, seed, first + requests)
    run = secrets.token_hex(4)
    result = Simulation()
    pending: list[dict[str, Any]] = []
    next_request = iter(range(first, first + requests))
    auth = {"Authorization": f"Bearer {api_key}"}
    started = time.perf_counter()

    async with httpx.AsyncClient(base_url=host.rstrip("/"), timeout=timeout) as client:

        async def post(batch: list[dict[str, Any]]) -> None:
            response = await client.post("/v1/events", json=batch, headers=auth)
            if response.status_code != 202:
                raise RecforgeError(f"POST /v1/events answered {response.status_code}: {response.text[:300]}")
            answer = response.json()
            if answer["rejected"]:
                raise RecforgeError(f"the server rejected simulated events: {answer['rejected'][:3]}")
            result.events_posted += answer["accepted"]

        async def flush() -> None:
            while pending:
                batch = pending[:_POST_BATCH]
                del pending[:_POST_BATCH]
                await post(batch)

        async def worker() -> None:
            for j in next_request:
                user = int(users[j])
                name = f"u{user}"
                try:
                    response = await client.get(f"/v1/users/{name}/recommendations", params={"k": k})
                except httpx.HTTPError as error:
                    result.failures.append(f"request {j}: {error!r}")
                    continue
                result.requests += 1
                if response.status_code != 200:
                    result.failures.append(f"request {j}: {response.status_code} {response.text[:200]}")
                    continue
                answer = response.json()
                items = [entry["item_id"] for entry in answer["items"]]
                rng = np.random.default_rng([seed, 1, j])
                clicked, bought = behave(tastes, user, items, rng)
                tag = answer["recommendation_id"] if rng.random() >= untagged else None
                now = time.time()
                for p in np.flatnonzero(clicked).tolist():
                    for kind, when, happened in (
                        ("view", now, True),
                        ("purchase", now + 1e-3, bool(bought[p])),
                    ):
                        if happened:
                            pending.append(
                                {
                                    "event_id": f"sim-{run}-{j}-{p}-{kind}",
                                    "user_id": name,
                                    "item_id": items[p],
                                    "event_type": kind,
                                    "timestamp": when,
                                    "recommendation_id": tag,
                                }
                            )
                arm = answer.get("experiment")
                key = f"{arm['name']}:{arm['arm']}" if arm else answer["model_version"]
                counts = result.by_arm.setdefault(key, Counter())
                counts.update(requests=1, clicks=int(clicked.sum()), purchases=int(bought.sum()))
                result.shown += len(items)
                result.clicks += int(clicked.sum())
                result.purchases += int(bought.sum())
                if len(pending) >= _POST_BATCH:
                    await flush()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await flush()
    result.seconds = time.perf_counter() - started
    return result
