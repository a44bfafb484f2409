"""One ALS solve path: the half-iteration that local training, fold-in and Spark's blocks share.

A half-iteration solves, for every row ``u`` of a CSR matrix (users x items when the users are
solved, items x users when the items are) with the other side's factors ``Y`` fixed, the
normal equations (1) of :mod:`recforge.kernels.als`::

    (a0 G + lam_u I + sum_j w_uj y_j y_j^T) x_u = sum_j v_uj y_j                      (1)

``G = Y^T Y`` for implicit feedback and ``0`` for explicit ratings; ``w``, ``v``, ``a0`` and
``lam_u`` follow from ``alpha``, ``implicit``, ``unobserved_weight``, ``regularization`` and its
scaling as (1) states. The rows
are solved by ``cg_steps`` steps of conjugate gradient started from the previous ``x_u``
(``solver="cg"``), exactly (``"cholesky"``), or under ``x_u >= 0`` (``nonnegative``: NNLS).

* :class:`HalfStep` is those settings, built once from an :class:`recforge.ALS`
  (:meth:`HalfStep.of`), plus the kernels' form of ``a0 G``, found once per half-iteration
  (:meth:`HalfStep.with_gram`): the full ``a0 G`` for NNLS, else its eigenvalues and
  eigenvectors ``Q`` (the CG and exact kernels take ``G`` diagonal: both sides are first
  rotated by ``Q``), and the size of the other side (frequency scaling counts it);
  :meth:`HalfStep.row_regularization` gives the rows' ``lam_u``.
* :func:`solve_rows` runs the kernel the step names over the rows; :func:`check_failures`
  turns the rows it could not solve into the error a fit raises.
* :func:`initial_factors` draws the factors every fit starts from.

Who rotates what differs, not the maths: local training (:class:`recforge.ALS`) rotates both
factor matrices in place and keeps its factors in the eigenbasis of the last Gram; fold-in
rotates a copy of the user's item factors and rotates the solution back; on Spark, each
source block rotates its factors before shipping them (:func:`recforge.spark.blocks.ship`) and
each destination block (:func:`recforge.spark.blocks.solve_block`) rotates its solution back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from recforge.kernels import als as kernels

if TYPE_CHECKING:
    from recforge.models.als import ALS

__all__ = ["BLOCKS_PER_THREAD", "HalfStep", "check_failures", "initial_factors", "solve_rows"]

#: blocks of rows per thread handed out by the parallel kernels (:func:`kernels.row_blocks`)
BLOCKS_PER_THREAD = 64


@dataclass(frozen=True)
class HalfStep:
    """The settings of one half-iteration and the kernels' Gram matrix.

    The hyperparameters are :class:`recforge.ALS`'s (``scaling``: ``regularization_scaling``,
    ``exponent``: ``regularization_exponent``, ``unobserved``: ``unobserved_weight``).
    ``gram``, ``rotation`` and ``other_rows`` are ``None`` in the template :meth:`of` builds;
    :meth:`with_gram` fills them in: for implicit feedback the eigenvalues of ``a0 G``
    (``gram`` ``[f]``) with the rotation ``Q`` (``rotation`` ``[f, f]``) for CG and exact solves,
    or the full ``a0 G`` (``gram`` ``[f, f]``, no rotation) for NNLS, both in ``dtype``
    (explicit ratings have ``G = 0`` and need neither); ``other_rows``: the number of rows of
    the other side (all of them, not only those a Spark block receives).
    """

    factors: int
    dtype: np.dtype
    regularization: float
    alpha: float
    implicit: bool
    scaling: str
    solver: str
    cg_steps: int
    nonnegative: bool
    exponent: float = 1.0
    unobserved: float = 1.0
    gram: np.ndarray | None = None
    rotation: np.ndarray | None = None
    other_rows: int | None = None

    @classmethod
    def of(cls, als: ALS) -> HalfStep:
        """The template step of ``als``'s (validated) hyperparameters, without a Gram."""
        return cls(
            factors=int(als.factors),
            dtype=np.dtype(als.dtype),
            regularization=float(als.regularization),
            alpha=float(als.alpha),
            implicit=bool(als.implicit),  # a Python bool: 1 or np.True_ would compile other kernels
            scaling=str(als.regularization_scaling),
            solver=str(als.solver),
            cg_steps=int(als.cg_steps),
            nonnegative=bool(als.nonnegative),
            exponent=float(als.regularization_exponent),
            unobserved=float(als.unobserved_weight),
        )

    @property
    def initial_scale(self) -> float | None:
        """The standard deviation of normal initial factors (:func:`initial_factors`): Rendle et
        al.'s ``0.1 / sqrt(factors)`` with frequency scaling, else ``None`` (uniform)."""
        return 0.1 / float(np.sqrt(self.factors)) if self.scaling == "frequency" else None

    @property
    def warm_start(self) -> bool:
        """Whether the solver starts from the previous factors (CG; NNLS and exact solves do not)."""
        return self.solver == "cg" and not self.nonnegative

    def with_gram(self, gram: np.ndarray | None, other_rows: int | None = None) -> HalfStep:
        """This step against factors whose Gram matrix is ``gram`` (``Y^T Y`` in any float
        dtype, best float64; ``None`` for explicit ratings), ``other_rows`` of them: NNLS keeps
        ``a0 G`` itself, CG and exact solves its eigenbasis
        (:func:`recforge.kernels.als.gram_eigenbasis`), the eigenvalues scaled by ``a0``."""
        rows = None if other_rows is None else int(other_rows)
        if gram is None or not self.implicit:
            if self.implicit or gram is not None:
                raise ValueError("a half-step takes the Gram matrix for implicit feedback, and only then")
            return replace(self, gram=None, rotation=None, other_rows=rows)
        if self.nonnegative:
            full = np.asarray(gram, dtype=np.float64)
            if self.unobserved != 1.0:
                full = self.unobserved * full
            return replace(self, gram=np.array(full, dtype=self.dtype), rotation=None, other_rows=rows)
        if self.unobserved != 1.0:  # (skipped at 1: the default's bits stay what they were)
            gram = self.unobserved * np.asarray(gram, dtype=np.float64)
        eigenvalues, Q = kernels.gram_eigenbasis(gram, self.dtype)
        return replace(self, gram=eigenvalues, rotation=Q, other_rows=rows)

    def row_regularization(self, indptr: np.ndarray, data: np.ndarray) -> np.ndarray:
        """``lam_u`` of (1) for every row of the CSR ``(indptr, data)`` this step solves
        (:func:`recforge.kernels.als.row_regularization`), in ``dtype``."""
        if self.scaling == "frequency" and self.other_rows is None:
            raise ValueError("frequency scaling needs the size of the other side (HalfStep.with_gram)")
        return kernels.row_regularization(
            indptr,
            data,
            self.regularization,
            implicit=self.implicit,
            scaling=self.scaling,
            exponent=self.exponent,
            unobserved=self.unobserved,
            other_rows=self.other_rows or 0,
            dtype=self.dtype,
        )

    @property
    def kernel_gram(self) -> np.ndarray:
        """The ``G`` argument of the step's kernel: ``gram``, or zeros for explicit ratings."""
        if self.gram is not None:
            return self.gram
        if self.implicit:
            raise ValueError("an implicit half-step has no Gram matrix yet (HalfStep.with_gram)")
        f = self.factors
        return np.zeros((f, f) if self.nonnegative else f, dtype=self.dtype)


def solve_rows(
    step: HalfStep,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    blocks: np.ndarray,
    lam: np.ndarray | None = None,
) -> int:
    """Solve (1) for every row of the CSR ``(indptr, indices, data)`` into ``X`` (in place; CG
    starts from it), against ``Y``; both in ``step.dtype`` and, when the step has a rotation,
    already rotated by it. ``blocks``: :func:`recforge.kernels.als.row_blocks`; ``lam``: the
    rows' regularisation (:meth:`HalfStep.row_regularization`, computed here when not given).
    Run under ``numba.parallel_chunksize(1)``. Returns the number of rows whose system could not
    be solved (exact: not positive definite; NNLS: not converged; CG: always 0)."""
    scalar = np.dtype(step.dtype).type
    if lam is None:
        lam = step.row_regularization(indptr, data)
    args = (
        indptr,
        indices,
        data,
        X,
        Y,
        step.kernel_gram,
        lam,
        scalar(step.alpha),
        scalar(step.unobserved),
        step.implicit,
    )
    if step.nonnegative:
        return int(kernels.als_nnls(*args, blocks))
    if step.solver == "cg":
        kernels.als_cg(*args, step.cg_steps, blocks)
        return 0
    return int(kernels.als_exact(*args, blocks))


def check_failures(failures: int, step: HalfStep) -> None:
    """Raise ``ValueError`` when ``failures`` rows of a fit with ``step``'s settings could not
    be solved."""
    if not failures:
        return
    if step.nonnegative:
        message = f"nonnegative least squares did not converge on {failures} rows"
    else:
        message = f"the normal equations of {failures} rows are singular"
    raise ValueError(f"{message}; increase regularization")


def initial_factors(
    rng: np.random.Generator,
    n_users: int,
    n_items: int,
    factors: int,
    dtype: Any,
    normal_scale: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The factors a fit starts from: uniform in ``[0, 0.01)``, or with ``normal_scale``
    normal with mean 0 and that standard deviation (Rendle et al. 2022 start from
    ``0.1 / sqrt(factors)``), drawn in ``dtype`` from ``rng``, users first, then items (the same
    seed gives the same factors locally and on Spark)."""
    scalar = np.dtype(dtype).type
    if normal_scale is not None:
        users = rng.standard_normal((n_users, factors), dtype=scalar)
        users *= scalar(normal_scale)
        items = rng.standard_normal((n_items, factors), dtype=scalar)
        items *= scalar(normal_scale)
        return users, items
    users = rng.random((n_users, factors), dtype=scalar)
    users *= scalar(0.01)
    items = rng.random((n_items, factors), dtype=scalar)
    items *= scalar(0.01)
    return users, items
