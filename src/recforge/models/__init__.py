"""Recommenders under one contract (:class:`recforge.models.base.Recommender`)."""

from recforge.models.als import ALS
from recforge.models.base import FactorRecommender, NotFittedError, Recommender
from recforge.models.bpr import BPR
from recforge.models.ease import EASE
from recforge.models.itemknn import ItemKNN
from recforge.models.popular import Popular

__all__ = ["ALS", "BPR", "EASE", "FactorRecommender", "ItemKNN", "NotFittedError", "Popular", "Recommender"]
