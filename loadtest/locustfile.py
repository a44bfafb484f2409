"""Locust load test of a recforge server: recommendations, similar items and event posts.

Traffic mix (task weights): 70% ``GET /v1/users/{id}/recommendations`` (with an ``exclude``
now and then), 20% ``GET /v1/items/{id}/similar``, 10% ``POST /v1/events`` (a batch of
``--event-batch`` events, only when an API key is given in ``RECFORGE_LOADTEST_API_KEY``). Posted
events carry ``event_id``s starting with ``--event-id-prefix`` (``loadtest-``, recforge's
``[data] loadtest_prefix``): they are stored as real events are, but builds leave them out.

Ids follow a Zipf law (``p(rank) ∝ rank ** -1.1`` over a random ranking), as real traffic
does: a few users and items get most requests. They come from ``--id-file`` (JSON ``{"users":
[...], "items": [...]}``; ``recforge loadtest`` writes one from the published model), or are the
generator's ``u<n>`` / ``i<n>``; ``--unknown-share`` of the users are new (the popular fallback,
or fold-in once they posted events). ``--target-rps`` paces the users to that total rate.

Run it with ``recforge loadtest`` (which prints a summary), or directly::

    locust -f loadtest/locustfile.py --headless -u 50 -r 50 -t 60s --host http://127.0.0.1:8000
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import random
import time
import uuid
from urllib.parse import quote

from locust import FastHttpUser, events, task

ZIPF_EXPONENT = 1.1
_state: dict[str, object] = {}


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--target-rps", type=float, default=0.0, help="Total requests/s (0: unpaced).")
    parser.add_argument("--id-file", default="", help="JSON file with 'users' and 'items' id lists.")
    parser.add_argument("--event-batch", type=int, default=100, help="Events per POST /v1/events.")
    parser.add_argument("--unknown-share", type=float, default=0.05, help="Share of requests for new users.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed of the id rankings.")
    parser.add_argument(
        "--event-id-prefix", default="loadtest-", help="Prefix of posted event ids (builds skip them)."
    )


class _Zipf:
    """Draws from ``ids`` with ``p(rank) ∝ rank ** -s`` over a seeded random ranking."""

    def __init__(self, ids: list[str], seed: int) -> None:
        self.ids = list(ids)
        random.Random(seed).shuffle(self.ids)
        self.cumulative = list(itertools.accumulate((r + 1) ** -ZIPF_EXPONENT for r in range(len(self.ids))))

    def draw(self) -> str:
        point = random.random() * self.cumulative[-1]
        return self.ids[min(bisect.bisect_left(self.cumulative, point), len(self.ids) - 1)]


@events.test_start.add_listener
def _load_ids(environment, **_: object) -> None:  # type: ignore[no-untyped-def]
    options = environment.parsed_options
    users, items = [f"u{n}" for n in range(10_000)], [f"i{n}" for n in range(2_000)]
    if options.id_file:
        with open(options.id_file) as handle:
            ids = json.load(handle)
        users, items = ids["users"] or users, ids["items"] or items
    _state["users"] = _Zipf(users, options.seed)
    _state["items"] = _Zipf(items, options.seed + 1)
    _state["api_key"] = os.environ.get("RECFORGE_LOADTEST_API_KEY", "")


class ApiUser(FastHttpUser):
    """One client: requests paced to its share of ``--target-rps``."""

    def wait_time(self) -> float:
        options = self.environment.parsed_options
        if options.target_rps <= 0:
            return 0.0
        period = max(options.num_users, 1) / options.target_rps
        now = time.monotonic()
        last = getattr(self, "_paced_at", None)
        self._paced_at = now if last is None else max(now, last + period)
        return max(0.0, self._paced_at - now) if last is not None else random.random() * period

    def _user(self) -> str:
        if random.random() < self.environment.parsed_options.unknown_share:
            return f"new-{random.randrange(1_000_000)}"
        return _state["users"].draw()  # type: ignore[attr-defined]

    @task(70)
    def recommendations(self) -> None:
        query = "k=10"
        if random.random() < 0.1:
            query += "&exclude=" + quote(",".join(_state["items"].draw() for _ in range(3)))  # type: ignore[attr-defined]
        self.client.get(
            f"/v1/users/{quote(self._user(), safe='')}/recommendations?{query}",
            name="/v1/users/{user_id}/recommendations",
        )

    @task(20)
    def similar(self) -> None:
        item = _state["items"].draw()  # type: ignore[attr-defined]
        self.client.get(f"/v1/items/{quote(item, safe='')}/similar?k=10", name="/v1/items/{item_id}/similar")

    @task(10)
    def post_events(self) -> None:
        key = _state["api_key"]
        if not key:
            return
        now = time.time()
        prefix = self.environment.parsed_options.event_id_prefix
        batch = [
            {
                "event_id": prefix + uuid.uuid4().hex,
                "user_id": self._user(),
                "item_id": _state["items"].draw(),  # type: ignore[attr-defined]
                "event_type": random.choices(("view", "like", "cart", "purchase"), (86, 7, 4.5, 2.5))[0],
                "timestamp": now,
            }
            for _ in range(self.environment.parsed_options.event_batch)
        ]
        self.client.post(
            "/v1/events",
            data=json.dumps(batch),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            name="/v1/events",
        )
