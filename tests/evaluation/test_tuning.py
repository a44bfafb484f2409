"""recforge.tune: it finds better configurations than bad ones, its best parameters rebuild the
best model, studies resume, poor trials are pruned, and bad arguments are refused."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import recforge
from recforge import ALS, ItemKNN
from recforge.data import Interactions
from recforge.evaluation import Choice, Evaluator, Range, TuneResult, random_split, tune

optuna = pytest.importorskip("optuna")

#: a configuration that cannot learn much: heavy regularisation, tiny confidence, few factors
BAD = {"factors": 4, "regularization": 300.0, "alpha": 0.1, "iterations": 5}
SMALL_SPACE = {
    "factors": Range(4, 32, log=True, integer=True),
    "regularization": Range(0.01, 300.0, log=True),
    "alpha": Range(0.1, 30.0, log=True),
    "iterations": Range(5, 12, integer=True),
}


def planted(seed: int = 0, n_users: int = 300, n_items: int = 120, groups: int = 4) -> Interactions:
    """Users in ``groups`` taste groups, each mostly interacting with its group's items (a few
    popular items liked by all, a little noise): structure a good model finds."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    per_group = n_items // groups
    for u in range(n_users):
        g = u % groups
        own = rng.choice(per_group, size=12, replace=False) + g * per_group
        noise = rng.choice(n_items, size=2, replace=False)
        items = np.unique(np.concatenate([own, noise]))
        rows.extend([u] * len(items))
        cols.extend(items)
    values = rng.integers(1, 5, size=len(rows)).astype(np.float32)
    return Interactions.from_csr(sp.csr_matrix((values, (rows, cols)), shape=(n_users, n_items)))


@pytest.fixture(scope="module")
def split():
    return random_split(planted(), 0.25, random_state=1)


def quick(split, **kwargs) -> TuneResult:
    settings = {
        "train": split.train,
        "validation": split.test,
        "trials": 6,
        "search_space": SMALL_SPACE,
        "startup_trials": 3,
        "show_progress": False,
        "fixed_params": {"num_threads": 1},  # tiny fits: waking a thread pool costs more than they do
    }
    return tune("als", **{**settings, **kwargs})


def test_tuning_beats_a_deliberately_bad_configuration(split):
    result = quick(split, initial_params=[BAD], prune=False)
    trials = {t.number: t for t in result.trials}
    assert trials[0].params == BAD  # the bad configuration was tried first
    assert result.best_trial != 0
    assert result.best_score > trials[0].value + 0.1
    # MAP is reported beside NDCG for every trial
    assert all({"ndcg", "map"} <= set(t.scores) for t in result.trials)
    assert result.best_scores["ndcg"] == result.best_score


def test_best_params_rebuild_the_best_model(split):
    result = quick(split)
    assert set(result.best_params) == {*SMALL_SPACE, "random_state", "num_threads"}
    model = ALS(**result.best_params).fit(split.train)  # the constructor accepts them as they are
    score = Evaluator(split.train, split.test, 10, metrics=("ndcg", "map")).score(model)
    assert score["ndcg"] == pytest.approx(result.best_score, abs=1e-12)
    assert score["map"] == pytest.approx(result.best_scores["map"], abs=1e-12)
    assert isinstance(result.make_model(), ALS)
    assert result.top(1)[0].number == result.best_trial


def test_the_same_call_gives_the_same_trials(split):
    first, second = quick(split, trials=4), quick(split, trials=4)
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    assert [t.value for t in first.trials] == [t.value for t in second.trials]


def test_a_stored_study_resumes(split, tmp_path):
    storage = tmp_path / "studies" / "als.db"
    first = quick(split, trials=3, storage=storage, study_name="s")
    assert storage.exists() and first.study_name == "s" and len(first.trials) == 3
    second = quick(split, trials=2, storage=storage, study_name="s")
    assert [t.number for t in second.trials] == [0, 1, 2, 3, 4]
    assert [t.params for t in second.trials[:3]] == [t.params for t in first.trials]
    # the resumed sampler does not replay the first random points
    assert second.trials[3].params != first.trials[0].params
    assert second.best_score >= first.best_score
    # a call that would not be comparable is refused
    with pytest.raises(ValueError, match="set up with another k"):
        quick(split, trials=1, storage=storage, study_name="s", k=5)


def test_poor_trials_are_pruned_from_their_per_iteration_scores(split):
    good = {"factors": 16, "regularization": 1.0, "alpha": 1.0, "iterations": 12}
    # five complete trials, then the bad configuration given as many iterations
    points = [good] * 5 + [{**BAD, "iterations": 12}]
    result = quick(split, trials=6, initial_params=points)
    last = result.trials[5]
    assert result.count("complete") == 5
    assert last.state == "pruned" and last.value is None
    # the default median rule prunes after the 4th iteration, not before, and not at the end
    assert last.iteration == 4 and [i for i, _ in last.curve] == [1, 2, 3, 4]
    assert last.scores["ndcg"] < min(t.value for t in result.trials[:5])


def test_itemknn_has_a_default_space_and_no_iterations(split):
    result = tune("itemknn", train=split.train, validation=split.test, trials=3, show_progress=False)
    assert set(result.best_params) == {"neighbors"}
    assert all(t.iteration is None and t.curve == () for t in result.trials)
    model = ItemKNN(**result.best_params).fit(split.train)
    assert Evaluator(split.train, split.test, 10).score(model)["ndcg"] == pytest.approx(result.best_score)


def test_timeout_alone_ends_the_study(split):
    result = quick(split, trials=None, timeout=0.5)
    assert len(result.trials) >= 1


def test_it_is_exported_at_the_top():
    assert recforge.tune is tune


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "nope"}, "registered model name"),
        ({"metric": "coverage"}, "metric must be one of"),
        ({"k": 0}, "k must be an integer >= 1"),
        ({"trials": 0}, "trials must be an integer >= 1"),
        ({"trials": None}, "give trials or timeout"),
        ({"timeout": -1}, "timeout must be a positive number"),
        ({"search_space": {"depth": Range(1, 2)}}, r"not parameters of als"),
        ({"search_space": {"factors": 8}}, "must be a Range or a Choice"),
        ({"fixed_params": {"factors": 8}}, "also in the search space"),
        ({"fixed_params": {"colour": 1}}, "not parameters of als"),
        ({"search_space": {"factors": Range(0, 4, integer=True)}}, "als rejects the tuning setup: factors"),
        ({"search_space": {"solver": Choice(("cg", "qr"))}}, "als rejects the tuning setup: solver"),
        ({"initial_params": [{"depth": 3}]}, "initial_params names"),
        ({"prune": "yes"}, "prune must be"),
    ],
)
def test_bad_arguments_are_refused(split, kwargs, message):
    settings = {"train": split.train, "validation": split.test, "trials": 1, "show_progress": False}
    model = kwargs.pop("model", "als")
    with pytest.raises(ValueError, match=message):
        tune(model, **{**settings, **kwargs})


def test_popular_has_nothing_to_tune(split):
    with pytest.raises(ValueError, match="nothing to tune for popular"):
        tune("popular", train=split.train, validation=split.test, trials=1)


def test_a_validation_without_relevant_items_is_refused(split):
    empty = sp.csr_matrix(split.test.shape, dtype=np.float32)
    with pytest.raises(ValueError, match="nothing to score"):
        tune("als", train=split.train, validation=empty, trials=1)


def test_ranges_check_their_bounds():
    with pytest.raises(ValueError, match="low must be <= high"):
        Range(2, 1)
    with pytest.raises(ValueError, match="needs low > 0"):
        Range(0, 1, log=True)
    with pytest.raises(ValueError, match="integer bounds"):
        Range(1.5, 3, integer=True)
    with pytest.raises(ValueError, match="at least one option"):
        Choice(())
    assert Range(4, 256, log=True, integer=True).clip(1000) == 256
    assert Range(0.1, 10.0).clip(0.0) == 0.1


# issue 16: folds, the budget, several metrics, AutoML across families --------------------------------
@pytest.fixture(scope="module")
def data():
    return planted(seed=2)


def test_without_validation_each_trial_is_the_mean_over_per_user_folds(data):
    from recforge.evaluation import per_user_folds

    result = tune("itemknn", train=data, trials=3, random_state=4, show_progress=False)
    assert result.folds == 3  # small data: 3 folds by default
    splits = per_user_folds(data, 3, 0.2, random_state=4)
    for trial in result.trials:
        assert len(trial.folds) == 3
        expected = [
            Evaluator(s.train, s.test, 10, metrics=("ndcg", "map")).score(
                ItemKNN(**trial.params).fit(s.train)
            )
            for s in splits
        ]
        for key in ("ndcg", "map"):
            values = [e[key] for e in expected]
            assert trial.scores[key] == pytest.approx(np.mean(values), abs=1e-12)
            assert trial.spread[key] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        assert trial.value == trial.scores["ndcg"]
    assert result.best_spread == result.top(1)[0].spread


def test_trials_none_runs_until_the_timeout(data):
    """The budget is used: with no trial count, trials keep coming until the timeout."""
    result = tune(
        "itemknn", train=data, folds=1, trials=None, timeout=3.0, show_progress=False,
        search_space={"neighbors": Range(5, 100, integer=True)},
    )  # fmt: skip
    assert result.seconds >= 3.0
    assert len(result.trials) >= 10  # each takes well under 0.3 s


def test_trials_are_pruned_fold_by_fold(data):
    """Five complete trials, then a poor one stopped after its first fold (ItemKNN has no
    iterations: only the fold steps can prune it)."""
    good = {"neighbors": 40}
    result = tune(
        "itemknn", train=data, trials=6, initial_params=[good] * 5 + [{"neighbors": 1}], show_progress=False,
        search_space={"neighbors": Range(1, 100, integer=True)},
    )  # fmt: skip
    last = result.trials[5]
    assert result.count("complete") == 5
    assert last.state == "pruned" and len(last.folds) == 1
    assert last.scores["ndcg"] < min(t.scores["ndcg"] for t in result.trials[:5])


def test_several_metrics_optimise_the_first_and_report_all(data):
    result = tune("itemknn", train=data, folds=2, trials=3, metric="map, ndcg,recall", show_progress=False)
    assert result.metrics == ("map", "ndcg", "recall") and result.metric == "map"
    assert result.best_score == result.best_scores["map"]
    assert all({"map", "ndcg", "recall"} <= set(t.scores) for t in result.trials)
    assert result.best_score == max(t.value for t in result.trials if t.value is not None)


def test_patience_stops_a_study_that_stopped_improving(data):
    result = tune(
        "itemknn", train=data, folds=1, trials=40, patience=3, show_progress=False,
        initial_params=[{"neighbors": 40}] * 5,
    )  # fmt: skip
    best = result.best_trial
    assert len(result.trials) == best + 4  # three after the best, then it stopped


def test_auto_searches_every_family_and_keeps_each_winner(data):
    fixed = {"als": {"num_threads": 1}, "bpr": {"num_threads": 1}}
    result = tune("auto", train=data, folds=2, trials=2, fixed_params=fixed, show_progress=False)
    assert set(result.families) == {"als", "itemknn", "ease", "bpr"}
    best = max(result.families.values(), key=lambda r: r.best_score)
    assert result.model == best.model and result.best_score == best.best_score
    assert result.best_params == best.best_params
    assert {t.model for t in result.trials} == set(result.families) and len(result.trials) == 8
    model = result.make_model()
    assert model.name == result.model
    assert result.info["families"] == {name: r.best_score for name, r in result.families.items()}


def test_auto_shares_the_budget_and_skips_a_family_that_cannot_fit(data):
    fixed = {"ease": {"max_items": 50}, "als": {"num_threads": 1}, "bpr": {"num_threads": 1}}
    started = __import__("time").perf_counter()
    result = tune(
        "auto", train=data, folds=1, trials=None, timeout=6.0, fixed_params=fixed, show_progress=False
    )
    elapsed = __import__("time").perf_counter() - started
    assert result.info["skipped"] == {"ease": "120 items, above its max_items=50"}
    assert set(result.families) == {"als", "itemknn", "bpr"}
    shares = result.info["shares"]
    assert shares["als"] == pytest.approx(2.0, abs=0.05)  # the first third of 6 s
    assert elapsed < 6.0 + 5.0  # (the last trial of each family may run over its share)
    assert all(r.seconds <= shares[name] + 3.0 for name, r in result.families.items())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": "ndcg,rmse"}, "metric must be one of"),
        ({"folds": 0}, "folds must be an integer >= 1"),
        ({"folds": 5, "validation_fraction": 0.3}, "more than everything"),
        ({"model": "auto", "fixed_params": {"num_threads": 1}}, "not model families of auto"),
        ({"model": "auto", "search_space": Range(1, 2)}, "must be a mapping by model name"),
        ({"patience": 0}, "patience must be an integer >= 1"),
    ],
)
def test_bad_fold_and_auto_arguments_are_refused(data, kwargs, message):
    model = kwargs.pop("model", "itemknn")
    with pytest.raises(ValueError, match=message):
        tune(model, train=data, trials=1, show_progress=False, **kwargs)


def test_folds_need_no_validation_part(split):
    with pytest.raises(ValueError, match="folds=3 is for tuning without a validation part"):
        tune("als", train=split.train, validation=split.test, folds=3, trials=1)


def test_the_study_plot_draws_every_metric_and_parameter(data, tmp_path):
    from matplotlib.image import imread

    from recforge.evaluation import plot_study

    single = tune("als", train=data, folds=1, trials=3, metric="ndcg,map", search_space=SMALL_SPACE,
                  fixed_params={"num_threads": 1}, show_progress=False)  # fmt: skip
    image = imread(plot_study(single, tmp_path / "als.png"))
    assert image.shape[0] > 300 and image.shape[1] > 5 * 200  # 2 rows; 1 + 4 parameter columns
    fixed = {"als": {"num_threads": 1}, "bpr": {"num_threads": 1}}
    several = tune("auto", train=data, folds=1, trials=2, fixed_params=fixed, show_progress=False)
    wide = imread(plot_study(several, tmp_path / "auto.png"))
    assert wide.shape[1] > image.shape[1]  # the families' parameters side by side
