"""The cold-start map (issue 15): ridge with a GCV-chosen penalty, and new items that rank
where their attributes say before their first event."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge import ALS, Interactions
from recforge.catalog import Catalog
from recforge.catalog.synthetic import generate_catalog
from recforge.data.generate import generate_events
from recforge.evaluation.metrics import metrics_at_k
from recforge.models.base import Recommender
from recforge.models.cold_start import ColdStartMap


def _catalog(n, rng):
    return Catalog.from_records(
        [{"item_id": f"i{j}", "categories": f"c{j % 4}", "size": float(rng.normal())} for j in range(n)]
    )


def test_ridge_solution_and_penalty_choice():
    rng = np.random.default_rng(0)
    catalog = _catalog(400, rng)
    from recforge.catalog.features import AttributeFeatures

    phi = AttributeFeatures.fit(catalog).transform(catalog).astype(np.float64)
    exact = phi @ rng.normal(size=(phi.shape[1], 3)) + 0.5
    fitted = ColdStartMap.fit(catalog, exact)
    np.testing.assert_allclose(fitted.transform(catalog), exact, atol=1e-3)  # noiseless: tiny penalty
    noise = ColdStartMap.fit(catalog, rng.normal(size=(400, 3)))
    assert np.abs(noise.weights).max() < 0.1  # pure noise: a large penalty, about the mean
    # the weights are the ridge solution of the centred problem for the chosen penalty
    y = exact + rng.normal(scale=0.5, size=exact.shape)
    noisy = ColdStartMap.fit(catalog, y)
    centred = phi - phi.mean(axis=0)
    weights = np.linalg.solve(
        centred.T @ centred + noisy.penalty * np.eye(phi.shape[1]), centred.T @ (y - y.mean(axis=0))
    )
    np.testing.assert_allclose(noisy.weights, weights, rtol=1e-3, atol=1e-4)


def test_new_items_rank_by_their_attributes(tmp_path):
    """Hold out 10% of the items of generated events (tastes follow categories); the cold
    factors of the held-out items, from their categories alone, rank them for the users who
    later took them far better than chance, before any event of theirs was seen."""
    events = generate_events(users=2000, items=600, events=60_000, seed=2, categories=12)
    catalog = Catalog.from_records(generate_catalog(600, seed=2, categories=12).to_pylist())
    held = {f"i{j}" for j in np.random.default_rng(1).choice(600, 60, replace=False)}
    cold_events = pc.is_in(events.column("item_id"), value_set=pa.array(sorted(held)))
    as_of = pc.max(events.column("timestamp")).as_py()
    train = Interactions.from_events(events.filter(pc.invert(cold_events)), as_of=as_of)
    model = ALS(factors=16, iterations=10, regularization=1.0, random_state=0).fit(train, catalog=catalog)
    assert set(model.items_.ids(model.cold_items_).tolist()) == held
    assert model.cold_map_ is not None
    test = Interactions.from_events(
        events.filter(cold_events), users=model.users_, items=model.items_, as_of=as_of
    )
    users = np.flatnonzero(np.diff(test.matrix.indptr) > 0).astype(np.int32)
    ids, _ = model.recommend(users, k=10, items=model.cold_items_)
    ndcg = metrics_at_k(ids, test.matrix[users], 10, ["ndcg"])["ndcg"]
    rng = np.random.default_rng(0)
    shuffled = np.stack([rng.permutation(model.cold_items_)[:10] for _ in users])
    chance = metrics_at_k(shuffled, test.matrix[users], 10, ["ndcg"])["ndcg"]
    assert ndcg > 2 * chance, (ndcg, chance)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.cold_map_.transform(catalog), model.cold_map_.transform(catalog))
