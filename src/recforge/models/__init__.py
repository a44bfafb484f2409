"""Recommenders under one contract (:class:`recforge.models.base.Recommender`)."""

from recforge.models.base import FactorRecommender, NotFittedError, Recommender
from recforge.models.popular import Popular

__all__ = ["FactorRecommender", "NotFittedError", "Popular", "Recommender"]
