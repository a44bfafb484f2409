"""recforge: a recommendation system from raw events to a served, monitored API."""

from recforge._version import __version__
from recforge.catalog import Catalog
from recforge.data import Interactions, Vocabulary
from recforge.evaluation import tune
from recforge.models import ALS, BPR, EASE, ItemKNN, Popular, Recommender
from recforge.topk import recommend_all, similar_items_all
from recforge.weighting import Weighting

__all__ = [
    "ALS",
    "BPR",
    "EASE",
    "Catalog",
    "Interactions",
    "ItemKNN",
    "Popular",
    "Recommender",
    "Vocabulary",
    "Weighting",
    "__version__",
    "recommend_all",
    "similar_items_all",
    "tune",
]
