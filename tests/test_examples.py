"""The examples the README points to run as they are (FastAPI's docs_src habit)."""

import runpy

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("name", ["quickstart.py"])
def test_example_runs(name, capsys):
    runpy.run_path(str(REPO / "examples" / name), run_name="__main__")
    assert "u0 ->" in capsys.readouterr().out
