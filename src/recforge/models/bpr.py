"""``BPR``: Bayesian Personalised Ranking matrix factorisation, trained by parallel SGD.

The model scores ``x_ui = w_u . h_i + b_i`` (``factors`` latent dimensions and an item bias)
and maximises BPR-Opt (Rendle, Freudenthaler, Gantner, Schmidt-Thieme 2009)::

    sum over (u, i, j) of  ln sigma(x_ui - x_uj)
                           - (lambda / 2) (|w_u|^2 + |h_i|^2 + b_i^2 + |h_j|^2 + b_j^2)

by stochastic gradient ascent over sampled triples: ``(u, i)`` a uniformly random stored
interaction (``p_ui = 1`` wherever ``r_ui > 0``; BPR uses the presence of an interaction, not
its strength), ``j`` uniform among the items ``u`` has not interacted with. The
regularisation is applied per step to the three rows the step touches (as in ``implicit``),
so ``lambda`` is per triple. An epoch is as many steps as there are stored interactions.
See :mod:`recforge.kernels.bpr` for the update rule and the sampling.

Parallel schedules: by default Hogwild! (each thread runs its own random stream and updates
the shared factors without locks; fast, the result depends on the number of threads).
``deterministic=True`` uses stratified SGD: users and items are split into
``min(32, n_users // 16, n_items // 16)`` (at least 1) random blocks redrawn every epoch, and
cells of disjoint user and item blocks are processed in parallel, each with its own seeded
stream; a cell's negatives come from its item block. The result then depends on
``random_state`` only, never on ``num_threads``.

Learned state: ``user_factors_`` ``[n_users, factors + 1]`` whose last column is 1, and
``item_factors_`` ``[n_items, factors + 1]`` whose last column is the item bias, so
``user_factors_ @ item_factors_.T`` are the scores. Initial values are uniform in
``[-0.5, 0.5) / factors`` (zero for users and items without interactions; user bias column 1).
``similar_items`` uses the cosine of the latent part ``h_i`` (the bias is left out, so a
popular item is not similar to everything).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from recforge._numba import thread_limits
from recforge._validation import check_number, check_random_state
from recforge.data.interactions import Interactions
from recforge.kernels.bpr import (
    bpr_epoch_blocked,
    bpr_epoch_hogwild,
    bpr_loss,
    group_by_cell,
    sample_triples,
)
from recforge.models.base import FactorRecommender, FitProgress

__all__ = ["BPR"]

#: The most blocks per side in deterministic mode, and the fewest users or items per block.
DETERMINISTIC_BLOCKS = 32
MIN_BLOCK_SIZE = 16
#: Triples in the fixed sample that ``FitProgress.loss()`` evaluates.
LOSS_SAMPLES = 100_000
#: Fold-in: at most this many negatives (a fixed pseudo-random sample beyond), Newton steps.
FOLD_IN_NEGATIVES = 1024
FOLD_IN_STEPS = 50


class BPR(FactorRecommender):
    """BPR matrix factorisation with an item bias, trained by Hogwild! or stratified SGD.

    Parameters: ``factors`` latent dimensions; ``learning_rate`` the SGD step; ``regularization``
    ``lambda`` per triple; ``iterations`` epochs (one epoch = nnz sampled triples);
    ``random_state`` seed or ``numpy.random.Generator``; ``num_threads`` (0: all cores);
    ``deterministic`` stratified SGD whose result does not depend on ``num_threads``; ``dtype``
    of the factors (float32 or float64).

    ``FitProgress.loss()`` is the mean BPR log-loss ``-ln sigma(x_ui - x_uj)`` (without the
    regularisation term) on a fixed sample of up to 100,000 triples drawn once per fit, so
    values are comparable across epochs; computing it does not change the training.
    """

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int | np.random.Generator | None = None,
        num_threads: int = 0,
        deterministic: bool = False,
        dtype: Any = np.float32,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.deterministic = deterministic
        self.dtype = dtype

    def _validate_params(self) -> None:
        check_number("factors", self.factors, integer=True, low=1)
        check_number("learning_rate", self.learning_rate, low=0, low_inclusive=False)
        check_number("regularization", self.regularization, low=0)
        check_number("iterations", self.iterations, integer=True, low=1)
        check_random_state(self.random_state)
        check_number("num_threads", self.num_threads, integer=True, low=0)
        if not isinstance(self.deterministic, bool | np.bool_):
            raise ValueError(f"deterministic must be True or False, got {self.deterministic!r}")
        _factor_dtype(self.dtype)

    # training ----------------------------------------------------------------------------------
    def _fit(self, interactions: Interactions, callback: Callable[[FitProgress], bool | None] | None) -> None:
        matrix = interactions.matrix
        n_users, n_items = matrix.shape
        if matrix.nnz >= 2**32 or n_items >= 2**32:
            raise ValueError("BPR supports fewer than 2**32 interactions and items")
        dtype = _factor_dtype(self.dtype)
        rng = check_random_state(self.random_state)
        factors = int(self.factors)
        indptr, indices = matrix.indptr, matrix.indices
        user_count = np.diff(indptr)
        item_count = np.bincount(indices, minlength=n_items)

        X = ((rng.random((n_users, factors + 1)) - 0.5) / factors).astype(dtype)
        Y = ((rng.random((n_items, factors + 1)) - 0.5) / factors).astype(dtype)
        X[user_count == 0] = 0
        X[:, factors] = 1
        Y[item_count == 0] = 0
        self.user_factors_, self.item_factors_ = X, Y

        row_of_nnz = np.repeat(np.arange(n_users, dtype=np.int32), user_count)
        loss_seed = rng.integers(0, 2**64, dtype=np.uint64)
        lr, reg = dtype.type(self.learning_rate), dtype.type(self.regularization)
        loss_triples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

        def loss() -> float:
            if matrix.nnz == 0:
                return 0.0
            if not loss_triples:
                users, pos, neg = sample_triples(
                    indptr, indices, row_of_nnz, n_items, loss_seed, min(matrix.nnz, LOSS_SAMPLES)
                )
                found = neg >= 0
                loss_triples.append((users[found], pos[found], neg[found]))
            return float(bpr_loss(X, Y, *loss_triples[0]))

        n_blocks = max(1, min(DETERMINISTIC_BLOCKS, n_users // MIN_BLOCK_SIZE, n_items // MIN_BLOCK_SIZE))
        start = time.perf_counter()
        with thread_limits(self.num_threads):
            threads = numba.get_num_threads()
            for epoch in range(int(self.iterations)):
                if matrix.nnz:
                    if self.deterministic:
                        _blocked_epoch(indptr, indices, row_of_nnz, X, Y, lr, reg, n_blocks, rng)
                    else:
                        seeds = rng.integers(0, 2**64, size=threads, dtype=np.uint64)
                        bpr_epoch_hogwild(indptr, indices, row_of_nnz, X, Y, lr, reg, seeds, matrix.nnz)
                if callback is not None:
                    progress = FitProgress(
                        epoch + 1, int(self.iterations), time.perf_counter() - start, self, loss
                    )
                    if callback(progress):
                        break

    # fold-in -----------------------------------------------------------------------------------
    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The user row ``(w, 1)`` maximising this user's expected per-triple objective with the
        item factors fixed::

            f(w) = mean over i in H, j in N of  ln sigma(w . (h_i - h_j) + b_i - b_j)  -  (lambda / 2) |w|^2

        ``H`` the history's items with a positive value, ``N`` the other items (all of them when
        there are at most 1024, else the unseen items among a fixed pseudo-random sample of 1024,
        the same for every call). ``f`` is strictly concave (``lambda > 0``), so the maximiser is
        unique; it is found by Newton's method with backtracking from ``w = 0``. It is the
        fixed point of the training updates for this user, and deterministic given the model.
        An empty history gives ``w = 0``: items ranked by their bias. (With ``regularization=0`` a
        ridge of 1e-6 keeps the maximiser finite.)
        """
        Y = self.item_factors_
        n_items, width = Y.shape
        positives = np.unique(items[values > 0])
        w = np.zeros(width - 1)
        if n_items <= FOLD_IN_NEGATIVES:
            candidates = np.arange(n_items)
        else:
            candidates = np.sort(np.random.default_rng(0).choice(n_items, FOLD_IN_NEGATIVES, replace=False))
        negatives = np.setdiff1d(candidates, positives, assume_unique=True)
        if len(positives) and len(negatives):
            # the products are small: one BLAS thread (several spin-wait badly on a busy machine)
            with thread_limits(blas_threads=1):
                w = _newton_fold_in(
                    np.asarray(Y[positives], dtype=np.float64),
                    np.asarray(Y[negatives], dtype=np.float64),
                    max(float(self.regularization), 1e-6),
                )
        return np.append(w, 1.0).astype(Y.dtype)

    def similarity_vectors(self) -> np.ndarray:
        """The factors without the bias column: similar items compare tastes, not popularity."""
        return self.item_factors_[:, :-1]


def _newton_fold_in(H: np.ndarray, N: np.ndarray, lam: float) -> np.ndarray:
    """Maximise ``mean_ij ln sigma(w . (h_i - h_j) + b_i - b_j) - (lam / 2) |w|^2`` over ``w`` for
    item rows ``H`` (positives) and ``N`` (negatives), bias in the last column: damped Newton
    from ``w = 0`` (the objective is strictly concave), Armijo backtracking."""
    bias_gap = H[:, -1][:, None] - N[:, -1][None, :]
    H, N = H[:, :-1], N[:, :-1]
    pairs = H.shape[0] * N.shape[0]
    w = np.zeros(H.shape[1])

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        x = (H @ w)[:, None] - (N @ w)[None, :] + bias_gap
        return float(-np.logaddexp(0.0, -x).sum() / pairs - 0.5 * lam * w @ w), x

    value, x = objective(w)
    for _ in range(FOLD_IN_STEPS):
        z = 0.5 * (1.0 - np.tanh(0.5 * x))  # 1 - sigma(x), without overflow
        a = z * (1.0 - z)  # sigma(x) (1 - sigma(x))
        gradient = (H.T @ z.sum(axis=1) - N.T @ z.sum(axis=0)) / pairs - lam * w
        cross = H.T @ (a @ N)
        curvature = ((H.T * a.sum(axis=1)) @ H + (N.T * a.sum(axis=0)) @ N - cross - cross.T) / pairs
        step = np.linalg.solve(curvature + lam * np.eye(len(w)), gradient)
        decrease = float(gradient @ step)
        if decrease < 1e-12:
            break
        t = 1.0
        while True:
            candidate_value, candidate_x = objective(w + t * step)
            if candidate_value >= value + 0.25 * t * decrease or t < 1e-8:
                break
            t *= 0.5
        w, value, x = w + t * step, candidate_value, candidate_x
    return w


def _blocked_epoch(
    indptr: np.ndarray,
    indices: np.ndarray,
    row_of_nnz: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    lr: float,
    reg: float,
    n_blocks: int,
    rng: np.random.Generator,
) -> None:
    """Draw this epoch's random blocks and seeds, then run one stratified epoch."""
    n_users, n_items = X.shape[0], Y.shape[0]
    user_block = np.empty(n_users, np.int64)
    user_block[rng.permutation(n_users)] = np.arange(n_users) * n_blocks // n_users
    block_items = rng.permutation(n_items)
    item_block = np.empty(n_items, np.int64)
    item_block[block_items] = np.arange(n_items) * n_blocks // n_items
    block_ptr = np.searchsorted(np.arange(n_items) * n_blocks // n_items, np.arange(n_blocks + 1))
    cell_ptr, cell_nnz = group_by_cell(row_of_nnz, indices, user_block, item_block, n_blocks)
    seeds = rng.integers(0, 2**64, size=n_blocks * n_blocks, dtype=np.uint64)
    bpr_epoch_blocked(
        indptr, indices, row_of_nnz, X, Y, lr, reg, cell_ptr, cell_nnz, block_ptr, block_items, seeds
    )


def _factor_dtype(dtype: Any) -> np.dtype:
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return resolved
