"""recforge from Python: events -> Interactions -> ALS -> recommendations, evaluated.

Run it with ``python examples/quickstart.py``; tests/test_examples.py runs it too, so it stays
true.
"""

import numpy as np

import recforge
from recforge.data.generate import generate_events
from recforge.evaluation import compare, temporal_split

# 1. Events: here synthetic marketplace events (views, likes, carts, purchases) over 90 days.
events = generate_events(users=2_000, items=500, events=60_000, days=90, seed=0)

# 2. A temporal holdout: the newest 10% of events are what the model must predict.
split = temporal_split(events, test_fraction=0.1, weighting=recforge.Weighting(half_life_days=30))
train = split.train  # Interactions: CSR of r_ui = sum weight(type) * value * 0.5 ** (age / half-life)

# 3. Train implicit-feedback ALS (confidence c = 1 + alpha * r) and the popularity baseline.
als = recforge.ALS(factors=32, regularization=0.05, alpha=2.0, iterations=10, random_state=0).fit(train)
popular = recforge.Popular().fit(train)

# 4. Recommend by external id; seen items are filtered; unknown users get an empty (None) row.
item_ids, scores = als.recommend(["u0", "u1", "nobody"], k=5)
print("u0 ->", list(item_ids[0]))
print("similar to i0 ->", list(als.similar_items(["i0"], k=5)[0][0]))

# 5. Fold-in: a user the model has never seen, known only by a few fresh events.
fresh, _ = als.recommend_for_history(["i1", "i2", "i3"], values=[1.0, 4.0, 16.0], k=5)
print("fresh user ->", list(fresh))

# 6. Why: the score of u0's first item, split exactly over u0's history items.
why = als.explain("u0", item_ids[0][0], n=3)
shares = dict(zip(why.items, why.shares.round(2).tolist(), strict=True))
print(f"{item_ids[0][0]} for u0 (score {why.score:.3f}) because of", shares)
assert abs(als.explain("u0", item_ids[0][0], n=10_000).explained - why.score) < 1e-9

# 7. Evaluate through the same path that produces served lists, against popularity.
report = compare({"popular": popular, "als": als}, split.train, split.test, k=10)
report.print()
ndcg = {e.name: e.metrics["ndcg"] for e in report.evaluations}
assert ndcg["als"] > ndcg["popular"], ndcg
assert np.all(item_ids[2] == None)  # noqa: E711 - object array of ids, None for padding
