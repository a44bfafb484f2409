"""One ALS solve path: the half-iteration that local training, fold-in and Spark's blocks share.

A half-iteration solves, for every row ``u`` of a CSR matrix (users x items when the users are
solved, items x users when the items are) with the other side's factors ``Y`` fixed, the
normal equations (1) of :mod:`recforge.kernels.als`::

    (G + lam_u I + sum_j w_uj y_j y_j^T) x_u = sum_j v_uj y_j                         (1)

``G = Y^T Y`` for implicit feedback and ``0`` for explicit ratings; ``w``, ``v`` and ``lam_u``
follow from ``alpha``, ``implicit``, ``regularization`` and its scaling as (1) states. The rows
are solved by ``cg_steps`` steps of conjugate gradient started from the previous ``x_u``
(``solver="cg"``), exactly (``"cholesky"``), or under ``x_u >= 0`` (``nonnegative``: NNLS).

* :class:`HalfStep` is those settings, built once from an :class:`recforge.ALS`
  (:meth:`HalfStep.of`), plus the kernels' form of ``G``, found once per half-iteration
  (:meth:`HalfStep.with_gram`): the full ``G`` for NNLS, else its eigenvalues and eigenvectors
  ``Q`` (the CG and exact kernels take ``G`` diagonal: both sides are first rotated by ``Q``).
* :func:`solve_rows` runs the kernel the step names over the rows; :func:`check_failures`
  turns the rows it could not solve into the error a fit raises.
* :func:`initial_factors` draws the factors every fit starts from.

Who rotates what differs, not the maths: local training (:class:`recforge.ALS`) rotates both
factor matrices in place and keeps its factors in the eigenbasis of the last Gram; fold-in
rotates a copy of the user's item factors and rotates the solution back; a Spark block
(:func:`recforge.spark.blocks.solve_block`) rotates copies of what it received and rotates its
solution back.
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

    The hyperparameters are :class:`recforge.ALS`'s (``scale_by_count``: ``regularization_scaling
    == "count"``). ``gram`` and ``rotation`` are ``None`` in the template :meth:`of` builds;
    :meth:`with_gram` fills them in for implicit feedback: the eigenvalues of ``G`` (``gram``
    ``[f]``) with the rotation ``Q`` (``rotation`` ``[f, f]``) for CG and exact solves, or the
    full ``G`` (``gram`` ``[f, f]``, no rotation) for NNLS; both in ``dtype``. Explicit ratings
    have ``G = 0`` and need neither.
    """

    factors: int
    dtype: np.dtype
    regularization: float
    alpha: float
    implicit: bool
    scale_by_count: bool
    solver: str
    cg_steps: int
    nonnegative: bool
    gram: np.ndarray | None = None
    rotation: np.ndarray | None = None

    @classmethod
    def of(cls, als: ALS) -> HalfStep:
        """The template step of ``als``'s (validated) hyperparameters, without a Gram."""
        return cls(
            factors=int(als.factors),
            dtype=np.dtype(als.dtype),
            regularization=float(als.regularization),
            alpha=float(als.alpha),
            implicit=bool(als.implicit),  # a Python bool: 1 or np.True_ would compile other kernels
            scale_by_count=bool(als.regularization_scaling == "count"),
            solver=str(als.solver),
            cg_steps=int(als.cg_steps),
            nonnegative=bool(als.nonnegative),
        )

    @property
    def warm_start(self) -> bool:
        """Whether the solver starts from the previous factors (CG; NNLS and exact solves do not)."""
        return self.solver == "cg" and not self.nonnegative

    def with_gram(self, gram: np.ndarray | None) -> HalfStep:
        """This step against factors whose Gram matrix is ``gram`` (``Y^T Y`` in any float
        dtype, best float64; ``None`` for explicit ratings): NNLS keeps ``G`` itself, CG and
        exact solves its eigenbasis (:func:`recforge.kernels.als.gram_eigenbasis`)."""
        if gram is None or not self.implicit:
            if self.implicit or gram is not None:
                raise ValueError("a half-step takes the Gram matrix for implicit feedback, and only then")
            return replace(self, gram=None, rotation=None)
        if self.nonnegative:
            return replace(self, gram=np.array(gram, dtype=self.dtype), rotation=None)
        eigenvalues, Q = kernels.gram_eigenbasis(gram, self.dtype)
        return replace(self, gram=eigenvalues, rotation=Q)

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
) -> int:
    """Solve (1) for every row of the CSR ``(indptr, indices, data)`` into ``X`` (in place; CG
    starts from it), against ``Y``; both in ``step.dtype`` and, when the step has a rotation,
    already rotated by it. ``blocks``: :func:`recforge.kernels.als.row_blocks`. Run under
    ``numba.parallel_chunksize(1)``. Returns the number of rows whose system could not be solved
    (exact: not positive definite; NNLS: not converged; CG: always 0)."""
    scalar = np.dtype(step.dtype).type
    args = (
        indptr,
        indices,
        data,
        X,
        Y,
        step.kernel_gram,
        scalar(step.regularization),
        step.scale_by_count,
        scalar(step.alpha),
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
    rng: np.random.Generator, n_users: int, n_items: int, factors: int, dtype: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The factors a fit starts from: uniform in ``[0, 0.01)``, drawn in ``dtype`` from ``rng``,
    users first, then items (the same seed gives the same factors locally and on Spark)."""
    scalar = np.dtype(dtype).type
    users = rng.random((n_users, factors), dtype=scalar)
    users *= scalar(0.01)
    items = rng.random((n_items, factors), dtype=scalar)
    items *= scalar(0.01)
    return users, items
