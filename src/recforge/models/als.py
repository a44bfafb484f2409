"""``ALS``: matrix factorisation by alternating least squares, implicit or explicit feedback.

The kernels (:mod:`recforge.kernels.als`) solve each row's normal equations, through the one
half-iteration of :mod:`recforge.models.als_solve` (shared with Spark); this module runs the
iterations, validates hyperparameters, reports progress and folds new users in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import numba
import numpy as np
import scipy.linalg
import scipy.sparse as sp

from recforge._numba import num_threads, thread_limits, warn_if_oversubscribed
from recforge._validation import check_in, check_number, check_random_state
from recforge.data.interactions import Interactions
from recforge.kernels import als as kernels
from recforge.models.als_solve import BLOCKS_PER_THREAD, HalfStep, check_failures, initial_factors, solve_rows
from recforge.models.base import FactorRecommender, FitProgress

__all__ = ["ALS"]


class ALS(FactorRecommender):
    r"""Alternating least squares on a users x items matrix of ``r`` values.

    **Implicit feedback** (``implicit=True``; Hu, Koren, Volinsky 2008) minimises, over user
    factors ``x_u`` and item factors ``y_i`` (``factors`` each)::

        L = sum_{(u, i) stored} c_ui (p_ui - x_u . y_i)^2
            + a0 * sum_{(u, i) not stored} (x_u . y_i)^2
            + regularization * (sum_u s_u |x_u|^2 + sum_i s_i |y_i|^2)

    with ``p_ui = 1`` if ``r_ui > 0`` else ``0``, ``c_ui = 1 + alpha * |r_ui|`` and ``a0 =
    unobserved_weight``: with the default ``a0 = 1`` this is Hu et al.'s sum over *all* pairs
    with confidence ``1`` off the matrix. **Explicit ratings** (``implicit=False``) minimise::

        L = sum_{(u, i) rated} (r_ui - x_u . y_i)^2
            + regularization * (sum_u s_u |x_u|^2 + sum_i s_i |y_i|^2)

    The scaling ``s`` is ``1`` for ``regularization_scaling="none"``; for ``"count"`` the number
    ``n_u`` of the row's entries (``r > 0`` for implicit feedback, all ratings for explicit),
    which is ALS-WR and what Spark's ``ALS`` does (its ``regParam`` is this
    ``regularization``); for ``"frequency"`` (implicit feedback only; Rendle, Krichene, Zhang,
    Koren, "Revisiting the Performance of iALS on Item Recommendation Benchmarks", RecSys 2022)
    ``s_u = (n_u + a0 * n_items) ** nu`` for a user and ``s_i = (n_i + a0 * n_users) ** nu`` for
    an item, ``nu = regularization_exponent``: the weight of the row's terms in the loss,
    raised to ``nu``. (Rendle et al. sum the ``a0`` term over all pairs, observed ones too: that
    is this objective with each stored entry's confidence raised by ``a0``, a shift that matters
    little at their small ``a0``; keeping Hu et al.'s form keeps the default objective exactly
    the one before the parameter existed.) With ``"frequency"`` the factors start from the
    paper's normal distribution with standard deviation ``0.1 / sqrt(factors)``.

    Each iteration solves all users with items fixed, then all items with users fixed; each
    row's problem is the ``f x f`` system
    ``(a0 G + lam_u I + Y_u^T W_u Y_u) x_u = Y_u^T v_u`` (``G = Y^T Y`` for implicit feedback,
    computed once per half-iteration, ``lam_u = regularization * s_u``), solved by ``cg_steps``
    steps of conjugate gradient warm-started from the previous factors (``solver="cg"``, as
    ``implicit`` does), exactly (``"cholesky"``: Cholesky of the system, or through the Woodbury
    identity for rows with few entries: the same solution), or, with ``nonnegative=True``, by
    non-negative least squares (Lawson-Hanson, as Spark's ``nonnegative`` option; slower). Rows
    without entries get zero factors.

    Factors start uniform in ``[0, 0.01)`` (but see ``"frequency"``) from ``random_state``; the
    same seed gives the same factors whatever the number of threads. Learned factors are
    expressed in the eigenbasis of the last Gram matrix (a rotation that changes no score,
    distance or loss); with ``nonnegative=True`` they are the non-negative factors themselves.

    Explicit fits read ``Interactions.ratings`` when present, else the matrix given.
    ``fit(X, callback)`` calls ``callback(FitProgress)`` after each iteration (``loss()``
    computes ``L`` on demand; returning ``True`` stops). ``recommend_for_history`` folds a new
    user in by one exact solve of its normal equations against the item factors (NNLS when
    ``nonnegative``), the same maths as a training row; ``explain`` decomposes that fold-in's
    scores exactly over the history items (:meth:`_contributions`).

    ``num_threads=0`` uses all numba threads; BLAS is pinned to one thread while fitting.
    """

    name = "als"
    explains = True

    user_factors_: np.ndarray
    item_factors_: np.ndarray
    #: the fold-in solve against the item factors, their Gram included (cached, not saved)
    _fold_in_step: HalfStep | None = None

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        solver: Literal["cg", "cholesky"] = "cg",
        cg_steps: int = 3,
        implicit: bool = True,
        nonnegative: bool = False,
        regularization_scaling: Literal["none", "count", "frequency"] = "none",
        regularization_exponent: float = 1.0,
        unobserved_weight: float = 1.0,
        random_state: int | np.random.Generator | None = None,
        num_threads: int = 0,
        dtype: Any = np.float32,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.solver = solver
        self.cg_steps = cg_steps
        self.implicit = implicit
        self.nonnegative = nonnegative
        self.regularization_scaling = regularization_scaling
        self.regularization_exponent = regularization_exponent
        self.unobserved_weight = unobserved_weight
        self.random_state = random_state
        self.num_threads = num_threads
        self.dtype = dtype

    # hyperparameters ---------------------------------------------------------------------------
    def _validate_params(self) -> None:
        check_number("factors", self.factors, integer=True, low=1)
        check_number("regularization", self.regularization, low=0)
        check_number("alpha", self.alpha, low=0)
        check_number("iterations", self.iterations, integer=True, low=0)
        check_in("solver", self.solver, ("cg", "cholesky"))
        check_number("cg_steps", self.cg_steps, integer=True, low=1)
        check_in("implicit", self.implicit, (True, False))
        check_in("nonnegative", self.nonnegative, (True, False))
        check_in("regularization_scaling", self.regularization_scaling, ("none", "count", "frequency"))
        check_number("regularization_exponent", self.regularization_exponent, low=0)
        check_number("unobserved_weight", self.unobserved_weight, low=0)
        if not self.implicit and self.regularization_scaling == "frequency":
            raise ValueError('regularization_scaling="frequency" is for implicit feedback; use "count"')
        if not self.implicit and self.unobserved_weight != 1:
            raise ValueError(
                "unobserved_weight is for implicit feedback (explicit ratings weigh no unobserved pair)"
            )
        check_random_state(self.random_state)
        check_number("num_threads", self.num_threads, integer=True, low=0)
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}") from None
        check_in("dtype", dtype, (np.dtype(np.float32), np.dtype(np.float64)))

    @property
    def _float(self) -> type[np.floating]:
        return np.dtype(self.dtype).type

    @property
    def _implicit(self) -> bool:
        """``implicit`` as a Python bool (``1`` or ``np.True_`` would compile other kernels)."""
        return bool(self.implicit)

    # fitting -----------------------------------------------------------------------------------
    def _training_matrix(self, interactions: Interactions) -> sp.csr_matrix:
        matrix = interactions.matrix
        if not self.implicit and interactions.ratings is not None:
            matrix = interactions.ratings
        if matrix.dtype != np.float32:
            matrix = matrix.astype(np.float32)
        return matrix

    def _fit(self, interactions: Interactions, callback: Callable[[FitProgress], bool | None] | None) -> None:
        self._fold_in_step = None
        Cui = self._training_matrix(interactions)
        rng = check_random_state(self.random_state)
        n_users, n_items = Cui.shape
        step = HalfStep.of(self)
        self.user_factors_, self.item_factors_ = initial_factors(
            rng, n_users, n_items, self.factors, self.dtype, step.initial_scale
        )
        if self.iterations == 0:
            return
        Ciu = Cui.T.tocsr()
        threads = num_threads(self.num_threads)
        user_step, item_step = replace(step, other_rows=n_items), replace(step, other_rows=n_users)
        halves = [
            (user_step, Cui, kernels.row_blocks(Cui.indptr, BLOCKS_PER_THREAD * threads), True),
            (item_step, Ciu, kernels.row_blocks(Ciu.indptr, BLOCKS_PER_THREAD * threads), False),
        ]
        lams = [half.row_regularization(matrix.indptr, matrix.data) for half, matrix, _, _ in halves]
        start = time.perf_counter()
        with thread_limits(numba_threads=threads, blas_threads=1), numba.parallel_chunksize(1):
            warn_if_oversubscribed()
            for iteration in range(self.iterations):
                for (half, matrix, blocks, users), lam in zip(halves, lams, strict=True):
                    if users:
                        self._half(half, matrix, blocks, lam, self.user_factors_, self.item_factors_)
                    else:
                        self._half(half, matrix, blocks, lam, self.item_factors_, self.user_factors_)
                if callback is not None:
                    progress = FitProgress(
                        iteration=iteration + 1,
                        iterations=self.iterations,
                        elapsed=time.perf_counter() - start,
                        model=self,
                        loss=lambda: self._loss(Cui),
                    )
                    if callback(progress):
                        break

    @staticmethod
    def _half(
        step: HalfStep,
        matrix: sp.csr_matrix,
        blocks: np.ndarray,
        lam: np.ndarray,
        X: np.ndarray,
        Y: np.ndarray,
    ) -> None:
        """One half-iteration: solve every row of ``matrix`` (regularised by ``lam``) for ``X``
        with ``Y`` fixed. For CG and exact solves of implicit feedback, both are first rotated
        in place into the eigenbasis of ``Y^T Y`` (``X`` only matters as CG's start)."""
        if step.implicit:
            step = step.with_gram(kernels.gram_matrix(Y), step.other_rows)
        if step.rotation is not None:
            kernels.rotate_in_place(step.rotation, Y, *((X,) if step.warm_start else ()))
        failures = solve_rows(step, matrix.indptr, matrix.indices, matrix.data, X, Y, blocks, lam)
        check_failures(failures, step)

    def _loss(self, matrix: sp.csr_matrix) -> float:
        n_users, n_items = matrix.shape
        step = replace(HalfStep.of(self), dtype=np.dtype(np.float64))  # the loss is float64
        transposed = matrix.T.tocsr()
        user_lam = replace(step, other_rows=n_items).row_regularization(matrix.indptr, matrix.data)
        item_lam = replace(step, other_rows=n_users).row_regularization(transposed.indptr, transposed.data)
        return kernels.als_loss(
            matrix.indptr,
            matrix.indices,
            matrix.data,
            self.user_factors_,
            self.item_factors_,
            user_lam,
            item_lam,
            float(self.alpha),
            float(self.unobserved_weight),
            self._implicit,
        )

    def loss(self, X: Interactions | sp.spmatrix) -> float:
        """The objective ``L`` (class doc) of the current factors on ``X`` (as given to ``fit``)."""
        self._check_fitted()
        from recforge.models.base import as_interactions

        return self._loss(self._training_matrix(as_interactions(X)))

    # fold-in -----------------------------------------------------------------------------------
    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        """One exact (or NNLS) solve of the new user's normal equations against ``item_factors_``."""
        dtype = self._float
        Y = np.asarray(self.item_factors_, dtype=dtype)
        step = self._fold_in_half_step(Y)
        unique, inverse = np.unique(np.asarray(items, dtype=np.int64), return_inverse=True)
        summed = np.bincount(inverse, weights=np.asarray(values, np.float64), minlength=len(unique))
        # index dtypes as scipy's CSR (int32), so the kernels compiled for training are reused
        indptr = np.array([0, len(unique)], dtype=np.int32)
        indices = np.arange(len(unique), dtype=np.int32)
        data = summed.astype(np.float32)
        x = np.zeros((1, self.factors), dtype=dtype)
        blocks = np.array([0, 1], dtype=np.int64)
        Yu = Y[unique]
        if step.rotation is not None:
            Yu = np.ascontiguousarray(Yu @ step.rotation)
        # one row: waking numba's thread pool would cost more than the solve (ms per request)
        with thread_limits(1):
            solve_rows(step, indptr, indices, data, x, Yu, blocks)
        if step.rotation is None:
            return x[0]
        return np.asarray(step.rotation @ x[0], dtype=dtype)

    def _fold_in_half_step(self, Y: np.ndarray) -> HalfStep:
        """The fold-in's step (an exact solve, or NNLS) against the item factors ``Y``, cached."""
        if self._fold_in_step is None:
            step = replace(HalfStep.of(self), solver="cholesky")
            gram = kernels.gram_matrix(Y) if step.implicit else None
            self._fold_in_step = step.with_gram(gram, len(Y))
        return self._fold_in_step

    # explanations ------------------------------------------------------------------------------
    def _contributions(self, items: np.ndarray, values: np.ndarray, targets: np.ndarray) -> np.ndarray:
        r"""The fold-in's scores split over the history (as ``implicit``'s ``explain``).

        The folded-in user solves (1) of :mod:`recforge.kernels.als`, ``A x = b`` with
        ``A = a0 G + lam I + sum_j w_j y_j y_j^T`` and ``b = sum_j v_j y_j``, so the score of a
        target ``t`` is, exactly::

            y_t . x = y_t^T A^{-1} b = sum_j v_j (y_t^T A^{-1} y_j)

        and ``v_j y_t^T A^{-1} y_j`` is history item ``j``'s contribution. Items with
        ``r <= 0`` (implicit feedback) have ``v_j = 0``: they shape ``A`` but contribute
        nothing directly. Cost: forming ``A`` (``O(h f^2)`` for ``h`` history items), one
        ``f x f`` factorisation, and one solve per target: the cost of one fold-in. With
        ``nonnegative=True`` the fold-in is NNLS; at its solution the coordinates ``P`` with
        ``x_P > 0`` satisfy ``A_PP x_P = b_P`` (the KKT conditions), so the same formula holds
        restricted to ``P`` (the fold-in is run once to find ``P``).
        """
        dtype = self._float
        Y = np.asarray(self.item_factors_)
        step = self._fold_in_half_step(np.asarray(Y, dtype=dtype))
        Yh = np.asarray(Y[items], dtype=np.float64)
        Yt = np.asarray(Y[targets], dtype=np.float64)
        r = np.asarray(values, dtype=np.float64)
        if step.implicit:
            confidence = 1.0 + step.alpha * np.abs(r)
            w = confidence - step.unobserved
            v = np.where(r > 0, confidence, 0.0)
        else:
            w = np.ones_like(r)
            v = r
        indptr = np.array([0, len(r)], dtype=np.int32)
        lam = float(step.row_regularization(indptr, r.astype(np.float32))[0])
        f = self.factors
        if step.rotation is not None:  # the Gram is kept diagonal: work in its eigenbasis
            Q = np.asarray(step.rotation, dtype=np.float64)
            Yh, Yt = Yh @ Q, Yt @ Q
            A = np.diag(np.asarray(step.gram, dtype=np.float64))
        elif step.gram is not None:
            A = np.array(step.gram, dtype=np.float64)
        else:
            A = np.zeros((f, f))
        A += lam * np.eye(f) + (Yh.T * w) @ Yh
        if step.nonnegative:
            active = self._fold_in(items, values.astype(np.float32)) > 0
            A, Yh, Yt = A[np.ix_(active, active)], Yh[:, active], Yt[:, active]
        try:
            Z = scipy.linalg.solve(A, Yt.T, assume_a="pos")
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):  # singular: least squares
            Z = np.linalg.lstsq(A, Yt.T, rcond=None)[0]
        return np.asarray((Yh @ Z).T * v, dtype=np.float64)

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        super()._set_state(arrays)
        self._fold_in_step = None
