"""The report: rich table, strict JSON, and a PNG chart drawn without warnings (the suite runs
with filterwarnings=error)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from matplotlib.image import imread
from rich.console import Console

from recforge.evaluation import Evaluation, Report, plot_report, print_report, render_table, write_json


def evaluation(name, scale, users=100, k=10):
    metrics = {
        "precision": 0.1 * scale,
        "recall": 0.2 * scale,
        "ndcg": 0.15 * scale,
        "map": 0.08 * scale,
        "coverage": 0.05 * scale,
    }
    return Evaluation(name, k, metrics, users, 500, 3, 0.01, 0.002)


@pytest.fixture
def report():
    return Report(
        (evaluation("als", 2.0), evaluation("popular", 1.0)), baseline="popular", split={"method": "random"}
    )


def test_lift_against_the_baseline(report):
    assert report.lift("als", "ndcg") == pytest.approx(1.0)
    assert report.lift("popular", "ndcg") == pytest.approx(0.0)
    assert math.isnan(Report((evaluation("als", 1.0),)).lift("als", "ndcg"))


def test_table_lists_every_metric_and_model(report):
    console = Console(record=True, width=120, color_system=None)
    print_report(report, console)
    text = console.export_text()
    for label in ("P@10", "R@10", "NDCG@10", "MAP@10", "Coverage@10", "popular (baseline)", "als"):
        assert label in text
    assert "0.3000 (+100%)" in text  # als ndcg: 0.30, twice the baseline
    assert "split: method=random" in text
    assert render_table(report).row_count == 6  # five metrics and the users row


def test_json_is_strict_and_complete(report, tmp_path):
    broken = Report(
        (evaluation("als", 1.0), Evaluation("popular", 10, {"ndcg": float("nan")}, 0, 0, 0, 0, 0))
    )
    path = write_json(broken, tmp_path / "a" / "report.json")
    data = json.loads(path.read_text())  # would fail on NaN with a strict parser
    assert data["models"]["popular"]["metrics"]["ndcg"] is None
    data = json.loads(report.write_json(tmp_path / "report.json").read_text())
    assert data["k"] == 10 and data["baseline"] == "popular" and data["split"] == {"method": "random"}
    assert data["models"]["als"]["metrics"]["ndcg"] == pytest.approx(0.3)
    assert data["models"]["als"]["users"] == 100
    assert data["lift"]["als"]["precision"] == pytest.approx(1.0)
    assert "recforge" in data and data["created"].endswith("Z")


@pytest.mark.parametrize("n_models", [1, 2, 4])
def test_chart_is_a_png(tmp_path, n_models):
    evaluations = tuple(evaluation(f"m{j}", 1.0 + j) for j in range(n_models))
    baseline = "m0" if n_models > 1 else None
    path = plot_report(Report(evaluations, baseline=baseline), tmp_path / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
    assert np.ptp(image[..., :3]) > 0  # something is drawn


def test_chart_with_missing_values(tmp_path):
    nan = Evaluation("x", 10, {"ndcg": float("nan"), "map": 0.1}, 0, 0, 0, 0, 0)
    assert Report((nan,)).plot(tmp_path / "c.png").exists()


def test_report_checks():
    with pytest.raises(ValueError, match="at least one"):
        Report(())
    with pytest.raises(ValueError, match="distinct"):
        Report((evaluation("a", 1), evaluation("a", 2)))
    with pytest.raises(ValueError, match="baseline"):
        Report((evaluation("a", 1),), baseline="b")
    with pytest.raises(ValueError, match="same k"):
        Report((evaluation("a", 1), evaluation("b", 1, k=5)))
    with pytest.raises(KeyError, match="no model named"):
        Report((evaluation("a", 1),))["b"]


def test_a_holdout_too_small_to_mean_anything_is_said_so(report):
    # issue 14: a 7-day holdout after one event from the future scored NDCG 1.0 on one user
    assert report.warnings == [] and report.to_dict()["warnings"] == []
    tiny = Report((Evaluation("als", 10, {"ndcg": 1.0}, 1, 1, 0, 0.0, 0.0),))
    assert tiny.warnings == [
        "the holdout is too small to mean anything: 1 users with 1 relevant pairs (wanted: at least 20 "
        "users and 50 pairs); hold out more events"
    ]
    assert tiny.to_dict()["warnings"] == tiny.warnings
    console = Console(record=True, width=200)
    print_report(tiny, console)
    assert "warning: the holdout is too small" in console.export_text()
