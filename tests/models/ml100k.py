"""ml-100k with the split of the datasets README (the same as ``recforge.evaluation.random_split``
on ``u.data`` in file order), for accuracy floors."""

import gzip

import numpy as np
import scipy.sparse as sp

from recforge.evaluation import ndcg_at_k
from tests.conftest import dataset_path


def ml100k_split():
    """ml-100k, per-user random 80/20 split (seed 0), test positives rating >= 4."""
    with gzip.open(dataset_path("ml-100k", "u.data.gz")) as handle:
        raw = np.loadtxt(handle, dtype=np.int64)
    users, items, ratings = raw[:, 0] - 1, raw[:, 1] - 1, raw[:, 2].astype(np.float32)
    shape = (users.max() + 1, items.max() + 1)
    key = np.random.default_rng(0).random(len(users))
    order = np.lexsort((key, users))
    counts = np.bincount(users, minlength=shape[0])
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(users), np.int64)
    rank[order] = np.arange(len(users)) - first[users[order]]
    test = rank < np.round(0.2 * counts)[users]
    train = sp.csr_matrix((ratings[~test], (users[~test], items[~test])), shape=shape)
    positive = test & (ratings >= 4)
    relevant = sp.csr_matrix((np.ones(positive.sum()), (users[positive], items[positive])), shape=shape)
    return train, relevant


def ndcg_at_10(model, relevant):
    """Mean NDCG@10 (binary relevance) over users with a test positive."""
    users = np.flatnonzero(np.diff(relevant.indptr))
    ids, _ = model.recommend(users, k=10)
    return ndcg_at_k(ids, relevant[users], 10)
