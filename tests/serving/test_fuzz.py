"""Fuzz the OpenAPI schema with schemathesis: no input may produce a 5xx, and every answer
matches the documented status codes, content types and schemas."""

from __future__ import annotations

import shutil

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
from tests.serving.conftest import API_KEY, make_config

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schemathesis.serializer.alias("application/x-ndjson", "text/plain")

# The schema does not depend on the data: take it from an app that is never started.
# (schemathesis.pytest.from_fixture does not work with pytest 9, so the schema is eager.)
schema = schemathesis.openapi.from_dict(create_app(Config()).openapi())


@pytest.fixture(scope="module")
def app(template_home, tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz") / "home"
    shutil.copytree(template_home, home, symlinks=True)
    app = create_app(make_config(home, max_body_bytes=200_000), watch=False)
    with TestClient(app):  # runs the lifespan: model loaded, committer started
        yield app


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_input_gives_a_server_error(case, app):
    case.call_and_validate(app=app, headers={"Authorization": f"Bearer {API_KEY}"}, checks=CHECKS)
