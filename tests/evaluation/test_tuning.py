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
