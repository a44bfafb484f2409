"""The dashboard's home, built once per session and copied for each module that changes it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.serving.dashboard.homes import build_dashboard_home


@pytest.fixture(scope="session")
def dashboard_template(tmp_path_factory) -> Path:
    return build_dashboard_home(tmp_path_factory.mktemp("dashboard-template") / "home")


@pytest.fixture(scope="module")
def dashboard_home(dashboard_template, tmp_path_factory) -> Path:
    """A private copy of the template (this module may publish and roll back)."""
    target = tmp_path_factory.mktemp("dashboard") / "home"
    shutil.copytree(dashboard_template, target, symlinks=True)
    return target
