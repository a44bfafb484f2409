"""Fuzz the OpenAPI schema with schemathesis: no input may produce a 5xx, and every answer
matches the documented status codes, content types and schemas. Each operation alone, then
stateful (issue 14): sequences that follow the API's links (post events for a user, read their
recommendations, erase them, read again), with the write key and, for erasure, the admin key.

Bounded: ``max_examples`` per operation, and ``STATEFUL_SCENARIOS`` scenarios of at most
``STATEFUL_STEPS`` calls each."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from recforge.config import Config
from recforge.serving import create_app
from tests.serving.conftest import ADMIN_KEY, API_KEY, make_config

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schemathesis.serializer.alias("application/x-ndjson", "text/plain")

# The schema does not depend on the data: take it from an app that is never started.
# (schemathesis.pytest.from_fixture does not work with pytest 9, so the schema is eager.)
schema = schemathesis.openapi.from_dict(create_app(Config()).openapi())


@pytest.fixture(scope="module")
def app(template_home, tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz") / "home"
    shutil.copytree(template_home, home, symlinks=True)
    app = create_app(make_config(home, max_body_bytes=200_000, admin_keys=[ADMIN_KEY]), watch=False)
    with TestClient(app):  # runs the lifespan: model loaded, committer started
        yield app


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_input_gives_a_server_error(case, app):
    case.call_and_validate(app=app, headers={"Authorization": f"Bearer {API_KEY}"}, checks=CHECKS)


STATEFUL_SCENARIOS = 60
STATEFUL_STEPS = 8


def key_for(case) -> str:
    return ADMIN_KEY if case.method.upper() == "DELETE" else API_KEY


def test_stateful_sequences_give_no_server_error(app):
    calls: Counter[tuple[str, str]] = Counter()

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case):
            return {"app": app, "headers": {"Authorization": f"Bearer {key_for(case)}"}}

        def after_call(self, response, case):
            calls[(case.method.upper(), case.path)] += 1
            assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])

        def validate_response(self, response, case, **kwargs):
            case.validate_response(response, checks=CHECKS)

    Workflow.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )
    operations = {(method, path) for method, path in calls}
    assert {
        ("POST", "/v1/events"),
        ("GET", "/v1/users/{user_id}/recommendations"),
        ("DELETE", "/v1/users/{user_id}/events"),
    } <= operations, calls
