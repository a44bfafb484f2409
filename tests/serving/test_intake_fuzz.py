"""Property-based fuzzing of the HTTP boundary (issue 14): batches mixing valid events with every
kind of bad one. Whatever Hypothesis draws, ``POST /v1/events`` answers 202 with exactly the valid
events accepted and every bad one listed by its index, stores exactly the valid ones, and never
answers 5xx."""

from __future__ import annotations

import itertools
import shutil
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recforge.data.store import EventStore
from recforge.serving import create_app
from tests.data.test_ingest_fuzz import SPOILERS, iso, valid_event
from tests.serving.conftest import API_KEY, make_config

MAX_EXAMPLES = 120
AUTH = {"Authorization": f"Bearer {API_KEY}"}
_ids = itertools.count()

not_an_event = st.one_of(
    st.integers(),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.none(),
    st.just({}),
    st.fixed_dictionaries({"user_id": st.lists(st.text(max_size=3), max_size=2)}),
)
odd_field = st.sampled_from(
    [
        ("user_id", ["u"]),
        ("item_id", {"a": 1}),
        ("event_type", True),
        ("value", [1]),
        ("timestamp", {"t": 1}),
        ("user_id", False),
        ("value", 1e308),
        ("timestamp", -5),
    ]
)


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for _ in range(draw(st.integers(1, 30))):
        choice = draw(st.sampled_from(("valid", "valid", "spoiled", "odd", "other")))
        event = draw(valid_event())
        event = {**event, "timestamp": iso(event["timestamp"]), "event_id": f"h{next(_ids)}"}
        if choice == "valid":
            out.append(("valid", event))
        elif choice == "spoiled":
            field, bad = draw(st.sampled_from(SPOILERS))
            out.append(("bad", {**event, field: bad}))
        elif choice == "odd":
            field, bad = draw(odd_field)
            out.append(("bad", {**event, field: bad}))
        else:
            out.append(("bad", draw(not_an_event)))
    return out


@pytest.fixture(scope="module")
def client(template_home, tmp_path_factory):
    home = tmp_path_factory.mktemp("intake-fuzz") / "home"
    shutil.copytree(template_home, home, symlinks=True)
    with TestClient(create_app(make_config(home), watch=False)) as client:
        yield client


@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(batch=batches())
def test_posted_batches_keep_exactly_the_valid_events(client, batch):
    body = [record for _, record in batch]
    response = client.post("/v1/events", json=body, headers=AUTH)
    assert response.status_code == 202, response.text
    answer = response.json()
    valid = {record["event_id"]: record for what, record in batch if what == "valid"}  # type: ignore[index]
    bad = [index for index, (what, _) in enumerate(batch) if what == "bad"]
    assert (answer["accepted"], answer["duplicates"]) == (len(valid), 0)
    assert [r["index"] for r in answer["rejected"]] == bad and all(r["reason"] for r in answer["rejected"])
    if valid:
        home = client.app.state.serving.config.home
        stored = EventStore(home).scan(["event_id", "user_id", "item_id", "value"])
        kept = {row["event_id"]: row for row in stored.to_pylist() if row["event_id"] in valid}
        assert set(kept) == set(valid)
        for event_id, row in kept.items():
            sent = valid[event_id]
            assert (row["user_id"], row["item_id"], row["value"]) == (
                sent["user_id"],
                sent["item_id"],
                sent["value"],
            )


#: Any id the event store accepts: 1..256 characters, no control character (surrogates cannot
#: travel as UTF-8 at all).
stored_id = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)


def in_path(external_id: str) -> str:
    """An id as a path segment: percent-encoded, dots too (a client removes ``.`` and ``..``
    segments before sending, RFC 3986 5.2.4)."""
    return quote(external_id, safe="").replace(".", "%2E")


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(user=stored_id | st.sampled_from([".", "..", "a/../b", "x/", "/"]), item=stored_id)
def test_every_id_the_store_accepts_is_servable(client, user, item):
    # issue 14: ids with / were stored but answered 404
    event = {"event_id": f"id{next(_ids)}", "user_id": user, "item_id": item, "event_type": "view",
             "timestamp": "2025-06-01T00:00:00Z"}  # fmt: skip
    answer = client.post("/v1/events", json=[event], headers=AUTH).json()
    assert answer["accepted"] == 1, answer
    response = client.get(f"/v1/users/{in_path(user)}/recommendations")
    assert response.status_code == 200 and response.json()["user_id"] == user
    response = client.get(f"/v1/items/{in_path(item)}/similar")
    assert response.status_code == 200 and response.json()["item_id"] == item
