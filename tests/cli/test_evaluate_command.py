"""``recforge evaluate``: several models on one split in one table (that fits 80 columns),
``--set`` for them, and rating errors (``--metric rmse,mae``) for explicit ALS."""

import io
import json

import numpy as np
import pyarrow as pa
import pytest
from rich.console import Console

from recforge import ALS, Weighting
from recforge.cli.main import main
from recforge.data.generate import generate_events
from recforge.data.interactions import Interactions
from recforge.data.store import EventStore
from recforge.evaluation.ratings import rating_errors
from recforge.evaluation.report import Evaluation, Report


def run(capsys, *args):
    code = main([*args])
    out, err = capsys.readouterr()
    return code, out, err


def test_several_models_on_one_split(tmp_path, capsys):
    home = tmp_path / "home"
    EventStore(home).append(generate_events(users=200, items=60, events=6_000, seed=4))
    report = tmp_path / "report.json"
    code, out, err = run(
        capsys,
        *("--home", str(home), "evaluate", "--model", "als,bpr,itemknn,popular", "--holdout", "20%"),
        *("--set", "iterations=2", "--set", "factors=8", "--set", "als.regularization=0.5"),
        *("--json", str(report)),
    )
    assert code == 0, err
    saved = json.loads(report.read_text())
    assert set(saved["models"]) == {"popular", "als", "bpr", "itemknn", "popular (model)"}
    users = {model["users"] for model in saved["models"].values()}
    assert len(users) == 1  # the same split and holdout users for every model
    same = (
        saved["models"]["popular"]["metrics"]["ndcg"],
        saved["models"]["popular (model)"]["metrics"]["ndcg"],
    )
    assert same[0] == pytest.approx(same[1])
    for name in ("als", "bpr", "itemknn"):
        assert f"\n  {name} " in out  # one row per model
    code, _, err = run(capsys, "--home", str(home), "evaluate", "--model", "als,itemknn", "--set", "alpha=2x")
    assert code == 2 and "--set for model als: alpha must be a finite number" in err
    code, _, err = run(capsys, "--home", str(home), "evaluate", "--model", "itemknn", "--set", "factors=8")
    assert code == 2 and "unknown parameter 'factors' for model itemknn; valid: neighbors" in err


def test_a_table_of_seven_models_fits_eighty_columns():
    metrics = ["precision", "recall", "ndcg", "map", "hit_rate", "mrr", "coverage"]
    names = ["popular", "als", "bpr", "itemknn", "ease", "als-frequency-scaled", "popular (model)"]
    evaluations = tuple(
        Evaluation(name, 10, {m: 0.01 * (i + 1) for m in metrics}, 1234, 1, 0, 0.0, 0.0)
        for i, name in enumerate(names)
    )
    buffer = io.StringIO()
    Report(evaluations, baseline="popular").print(Console(file=buffer, width=80))
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text and "users evaluated: 1234" in text
    assert all(label in text for label in ("P", "R", "NDCG", "MAP", "HR", "MRR", "Coverage"))
    assert "+600%" in text  # every lift shown, the last model's too


def rating_events(users: int = 120, items: int = 50, seed: int = 0) -> pa.Table:
    """Ratings from a rank-2 taste model (rounded to 1..5), one per (user, item) drawn."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(users, 2))
    v = rng.normal(size=(items, 2))
    pairs = rng.choice(users * items, size=users * items // 3, replace=False)
    rows, cols = pairs // items, pairs % items
    value = np.clip(np.rint(3 + (u[rows] * v[cols]).sum(axis=1)), 1, 5)
    n = len(pairs)
    return pa.table(
        {
            "event_id": [f"e{j}" for j in range(n)],
            "user_id": [f"u{r}" for r in rows],
            "item_id": [f"i{c}" for c in cols],
            "event_type": ["rating"] * n,
            "value": value.astype(np.float64),
            "timestamp": pa.array(
                1_700_000_000_000_000 + np.arange(n) * 60_000_000, pa.timestamp("us", tz="UTC")
            ),
        }
    )


def test_predict_and_rating_errors_match_a_direct_computation():
    events = rating_events()
    data = Interactions.from_events(events, Weighting(half_life_days=None))  # ratings do not fade
    model = ALS(factors=4, implicit=False, regularization=0.1, iterations=10, random_state=0).fit(data)
    users, items = data.users.ids(np.arange(5)), data.items.ids(np.arange(5))
    expected = (model.user_factors_[:5] * model.item_factors_[:5]).sum(axis=1)
    np.testing.assert_allclose(model.predict(users, items), expected, rtol=1e-5)
    assert np.isnan(model.predict(["nobody"], [items[0]])[0])
    with pytest.raises(ValueError, match="one item per user"):
        model.predict(users, items[:2])
    errors = rating_errors(model, data)
    coo = data.ratings.tocoo()
    direct = (model.user_factors_[coo.row] * model.item_factors_[coo.col]).sum(axis=1) - coo.data
    assert errors["rmse"] == pytest.approx(np.sqrt(np.mean(direct**2)), rel=1e-5)
    assert errors["mae"] == pytest.approx(np.mean(np.abs(direct)), rel=1e-5)
    assert errors["pairs"] == data.ratings.nnz and errors["rmse"] < 1.0  # it learned the ratings


def test_evaluate_reports_rmse_and_mae_for_explicit_als(tmp_path, capsys):
    home = tmp_path / "home"
    EventStore(home).append(rating_events(users=150, items=60, seed=1))
    report = tmp_path / "r.json"
    code, out, err = run(
        capsys,
        *("--home", str(home), "evaluate", "--model", "als", "--holdout", "25%"),
        *("--set", "implicit=false", "--set", "factors=4", "--set", "regularization=0.1"),
        *("--metric", "ndcg,rmse,mae", "--json", str(report)),
    )
    assert code == 0, err
    metrics = json.loads(report.read_text())["models"]
    assert 0 < metrics["als"]["metrics"]["rmse"] < 2.0 and 0 < metrics["als"]["metrics"]["mae"] < 2.0
    assert metrics["als"]["metrics"]["mae"] <= metrics["als"]["metrics"]["rmse"]
    assert metrics["popular"]["metrics"]["rmse"] is None  # popularity predicts no rating
    assert "RMSE" in out or "rmse" in out
    code, _, err = run(capsys, "--home", str(home), "evaluate", "--model", "als", "--metric", "accuracy")
    assert code == 2 and "unknown metric 'accuracy'" in err
