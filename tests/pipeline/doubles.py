"""Test models for the pipeline, independent of the real models' progress.

Importing this module registers them (``recforge.models.registry.register``), so a subprocess can use them
with ``python -c "import tests.pipeline.doubles; ..."``:

* ``test-cooccurrence``: cosine item-item co-occurrence (a small dense ItemKNN); clearly beats
  popularity on the generator's planted tastes. ``delay`` seconds of sleep in ``fit`` make a
  slow run for the lock and crash tests.
* ``test-antipopular``: recommends the least popular items: worse than popularity.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from recforge.data.interactions import Interactions
from recforge.models.base import FitProgress, Recommender
from recforge.models.popular import Popular
from recforge.models.registry import register
from recforge.topk import select_topk

__all__ = ["Antipopular", "Cooccurrence", "run_cli"]


class Cooccurrence(Recommender):
    """``score(u, i) = sum_{j in seen(u)} cos(j, i)`` with cosine over binary item columns."""

    name = "test-cooccurrence"
    similarity_: np.ndarray

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def _validate_params(self) -> None:
        if self.delay < 0:
            raise ValueError("delay must be >= 0")

    def _fit(self, interactions: Interactions, callback: Callable[[FitProgress], bool | None] | None) -> None:
        time.sleep(self.delay)
        co = np.asarray((self.seen_.T @ self.seen_).todense(), dtype=np.float64)
        norms = np.sqrt(np.diag(co))
        similarity = co / (np.outer(norms, norms) + 1e-9)
        np.fill_diagonal(similarity, 0.0)
        self.similarity_ = similarity.astype(np.float32)

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.seen_[users] @ self.similarity_, dtype=np.float32)

    def _history_scores(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.asarray(values @ self.similarity_[items], dtype=np.float32)

    def _similar(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.array(self.similarity_[items], dtype=np.float32)
        scores[np.arange(len(items)), items] = -np.inf
        return select_topk(scores, k)

    def _state(self) -> dict[str, np.ndarray]:
        return {"similarity": self.similarity_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.similarity_ = arrays["similarity"]


class Antipopular(Popular):
    """The least popular items first."""

    name = "test-antipopular"

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return -super()._score_users(users)


register(Cooccurrence)
register(Antipopular)


def run_cli(argv: list[str]) -> int:
    """``recforge`` with the test models registered (for subprocesses)."""
    from recforge.cli.main import main

    return main(argv)


if __name__ == "__main__":
    import sys

    sys.exit(run_cli(sys.argv[1:]))
