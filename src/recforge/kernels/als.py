"""Alternating least squares: per-row normal-equation solvers over CSR arrays.

One half-iteration of ALS solves, for every row ``u`` of a CSR matrix (users x items for the
user half, items x users for the item half) with entries ``r_uj``, over the other side's
factors ``Y`` (rows ``y_j``)::

    (a0 G + lam_u I + sum_j w_uj y_j y_j^T) x_u = sum_j v_uj y_j                      (1)

* implicit feedback (Hu, Koren, Volinsky 2008, with the unobserved weight ``a0`` of Rendle et
  al. 2022): ``G = Y^T Y``; a stored entry has confidence ``c = 1 + alpha |r|`` and preference
  ``p = 1`` if ``r > 0`` else ``0``; ``w = c - a0``, ``v = c p``. Every pair not stored weighs
  ``a0`` (``unobserved``, 1 by default, when ``w = alpha |r|``, ``v = 1 + alpha r``). This is
  the ``YtY + Yt(Cu - I)Y`` trick: ``G`` is computed once per half-iteration and each row
  visits only its own entries. The kernels take ``a0 G`` as their ``gram`` argument and
  ``unobserved`` for ``w``;
* explicit ratings: ``G = 0``, ``w = 1``, ``v = r`` (squared error on observed entries only);
* ``lam_u``: the row's regularisation, an array the caller computes once
  (:func:`row_regularization`: constant, ALS-WR's ``regularization * n_u`` as Spark has it, or
  Rendle et al.'s ``regularization * (n_u + a0 n_other) ** nu``). A row with no entries gets
  ``x_u = 0``.

**Diagonal Gram.** The CG and exact kernels take ``G`` diagonal (``gram_diag``): the caller
first finds the eigenvectors ``Q`` of ``Y^T Y`` (:func:`gram_eigenbasis`) and rotates both factor
matrices by them (two BLAS products; :func:`rotate_to_gram_eigenbasis` does both steps). A common
orthogonal rotation changes no product ``x . y`` and no norm, so the loss, every score and the
solution of (1) (expressed in the new basis) are unchanged, and CG is invariant under it. Per
row, the dense part of (1) then costs ``O(f)`` instead of ``O(f^2)`` (``implicit`` pays an
``f x f`` matrix-vector product per CG step and row), and an exact solve of a row with ``n``
entries, ``n`` small, costs ``O(n^2 f + n^3)`` through the Woodbury identity instead of
``O(n f^2 + f^3)``. The NNLS kernel takes the full ``G``: non-negativity is not rotation
invariant.

**Flops** (``f`` factors, ``s`` CG steps, a row with ``n`` entries; one multiply-add = 2):
CG ``(s + 1) (4 n f + 2 f) + s 10 f``; direct exact ``n f^2 + 2 n f + f^3 / 3 + 2 f^2``;
Woodbury exact ``n^2 f + n^3 / 3 + 4 n f``. :func:`row_flops` evaluates them.

Kernels work in the factors' dtype (float32 by default, as ``implicit`` does), except the
Woodbury and NNLS paths, which work in float64. Rows are independent and each is computed by
the same code whatever thread runs it, so results do not depend on the number of threads.
Work is handed out dynamically in cost-balanced blocks of rows (:func:`row_blocks`): run the
kernels under ``numba.parallel_chunksize(1)``.

Every kernel has a slow NumPy twin ``<name>_reference`` that states what it computes.
"""

from __future__ import annotations

import numpy as np

from recforge._numba import kernel, prange, prefetch

__all__ = [
    "als_cg",
    "als_cg_reference",
    "als_exact",
    "als_exact_reference",
    "als_loss",
    "als_loss_part",
    "als_loss_reference",
    "als_nnls",
    "als_nnls_reference",
    "gram_eigenbasis",
    "gram_matrix",
    "rotate_in_place",
    "rotate_to_gram_eigenbasis",
    "row_blocks",
    "row_flops",
    "row_regularization",
]

#: factor rows kept in a per-thread contiguous buffer (1024 x 64 float32 = 256 KB: stays in L2);
#: longer rows are processed in chunks (exact) or read through their indices (CG)
BUFFER_ROWS = 1024
#: rows fetched ahead of use in gathers (a prefetch hint per cache line)
PREFETCH_DISTANCE = 8
#: an exact solve uses Woodbury when the row has fewer than this fraction of ``f`` entries
WOODBURY_FRACTION = 0.7
#: SIMD chunk (floats) of the dense loops of the exact solver; matrices are padded to a multiple
CHUNK = 16
#: smallest pivot a Cholesky factorisation accepts before it counts the row as a failure
TINY = 1e-30
#: unused elements at both ends of a block's scratch arena (see :func:`_cg_block`)
ARENA_PAD = 1024
#: rows rotated per BLAS call (:func:`rotate_in_place`)
ROTATE_ROWS = 8192


# plain NumPy helpers ------------------------------------------------------------------------
def row_blocks(indptr: np.ndarray, n_blocks: int, row_cost: int = 16) -> np.ndarray:
    """Boundaries (int64) of at most ``n_blocks`` contiguous row ranges of about equal cost.

    A row's cost is its entry count plus ``row_cost``; a row heavier than a block gets a block
    of its own. Parallel loops hand blocks out dynamically, so skewed rows (a popular item)
    do not leave a thread idle, and each block allocates its scratch buffers once.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    n_rows = len(indptr) - 1
    if n_rows <= 0:
        return np.zeros(1, dtype=np.int64)
    cumulative = indptr - indptr[0] + row_cost * np.arange(n_rows + 1, dtype=np.int64)
    targets = np.linspace(0, cumulative[-1], max(1, n_blocks) + 1)
    bounds = np.searchsorted(cumulative, targets, side="left")
    bounds[0], bounds[-1] = 0, n_rows
    return np.unique(bounds).astype(np.int64)


def gram_matrix(Y: np.ndarray) -> np.ndarray:
    """``G = Y^T Y``: one BLAS product in ``Y``'s dtype, returned in float64."""
    return np.asarray(Y.T @ Y, dtype=np.float64)


def gram_eigenbasis(gram: np.ndarray, dtype: np.dtype | type) -> tuple[np.ndarray, np.ndarray]:
    """``(eigenvalues, Q)`` of a Gram matrix, ``G = Q diag(eigenvalues) Q^T``: ``eigh`` in
    float64, eigenvalues clipped at 0 (rounding can make them slightly negative), both cast to
    ``dtype``. The one place the kernels' diagonal Gram is computed (see the module doc)."""
    eigenvalues, Q = np.linalg.eigh(np.asarray(gram, dtype=np.float64))
    return np.maximum(eigenvalues, 0.0).astype(dtype), Q.astype(dtype)


def rotate_in_place(Q: np.ndarray, *matrices: np.ndarray, block: int = ROTATE_ROWS) -> None:
    """``M <- M @ Q`` for each of ``matrices``, in place, one BLAS product per ``block`` rows
    (memory stays bounded)."""
    for matrix in matrices:
        if len(matrix) == 0:
            continue
        buffer = np.empty((min(block, len(matrix)), matrix.shape[1]), dtype=matrix.dtype)
        for start in range(0, len(matrix), block):
            stop = min(start + block, len(matrix))
            out = buffer[: stop - start]
            np.dot(matrix[start:stop], Q, out=out)
            matrix[start:stop] = out


def rotate_to_gram_eigenbasis(Y: np.ndarray, *others: np.ndarray, block: int = ROTATE_ROWS) -> np.ndarray:
    """Rotate ``Y`` and ``others`` in place by the eigenvectors ``Q`` of ``Y^T Y``; return the
    eigenvalues (``Y``'s dtype, clipped at 0), i.e. the diagonal of the new ``Y^T Y``.

    ``Q`` is orthogonal, so ``x . y`` and every norm are unchanged. The work is BLAS products
    over blocks of rows (memory stays bounded), run single-threaded by the callers so results
    do not depend on thread counts.
    """
    eigenvalues, Q = gram_eigenbasis(gram_matrix(Y), Y.dtype)
    rotate_in_place(Q, Y, *others, block=block)
    return eigenvalues


def row_flops(indptr: np.ndarray, factors: int, solver: str, cg_steps: int = 3) -> float:
    """Floating-point operations of one half-iteration's row solves (see the module doc);
    rows without entries cost nothing. ``solver`` is ``"cg"`` or ``"exact"``."""
    n = np.diff(np.asarray(indptr, dtype=np.int64)).astype(np.float64)
    n = n[n > 0]
    f = float(factors)
    if solver == "cg":
        return float(np.sum((cg_steps + 1) * (4 * n * f + 2 * f) + cg_steps * 10 * f))
    woodbury = n < int(WOODBURY_FRACTION * factors)
    direct = n * f * f + 2 * n * f + f**3 / 3 + 2 * f * f
    small = n * n * f + n**3 / 3 + 4 * n * f
    return float(np.sum(np.where(woodbury, small, direct)))


def row_regularization(
    indptr: np.ndarray,
    data: np.ndarray,
    regularization: float,
    *,
    implicit: bool,
    scaling: str = "none",
    exponent: float = 1.0,
    unobserved: float = 1.0,
    other_rows: int = 0,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """``lam_u`` of (1) for every row of the CSR ``(indptr, data)``, in ``dtype``.

    ``n_u`` counts the row's entries with ``r > 0`` (implicit feedback) or all of them
    (explicit ratings). ``scaling="none"``: ``lam_u = regularization``; ``"count"``:
    ``regularization * n_u`` (one product in ``dtype``); ``"frequency"`` (Rendle et al. 2022):
    ``regularization * (n_u + unobserved * other_rows) ** exponent`` in float64, then cast,
    ``other_rows`` being the size of the other side (all items when users are solved). Rows
    without entries are never solved; their value is of no consequence.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    if scaling == "none":
        return np.full(len(indptr) - 1, regularization, dtype=dtype)
    counted = (np.asarray(data) > 0) if implicit else np.ones(len(data), dtype=bool)
    cumulative = np.concatenate([[0], np.cumsum(counted, dtype=np.int64)])
    n = cumulative[indptr[1:]] - cumulative[indptr[:-1]]
    if scaling == "count":
        scalar = np.dtype(dtype).type
        return scalar(regularization) * n.astype(dtype)
    if scaling == "frequency":
        base = n.astype(np.float64) + float(unobserved) * float(other_rows)
        return (float(regularization) * base ** float(exponent)).astype(dtype)
    raise ValueError(f"scaling must be none, count or frequency, got {scaling!r}")


def _row_system(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    u: int,
    Y: np.ndarray,
    gram: np.ndarray,
    lam: float,
    alpha: float,
    unobserved: float,
    implicit: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` of (1) for row ``u`` in float64, ``gram`` (``unobserved * Y^T Y``) full
    (``f x f``) or its diagonal, ``lam`` the row's regularisation."""
    sl = slice(indptr[u], indptr[u + 1])
    r = data[sl].astype(np.float64)
    y = Y[indices[sl]].astype(np.float64)
    f = Y.shape[1]
    if implicit:
        w, v = alpha * np.abs(r) + (1 - unobserved), np.where(r > 0, 1 + alpha * r, 0.0)
    else:
        w, v = np.ones_like(r), r
    g = np.diag(gram) if np.ndim(gram) == 1 else np.asarray(gram)
    A = g.astype(np.float64) + lam * np.eye(f) + (y * w[:, None]).T @ y
    return A, y.T @ v


# small compiled helpers ---------------------------------------------------------------------
@kernel(fastmath=True, inline=True)
def _weights(r, alpha, shift, one, implicit):  # pragma: no cover - compiled
    """``(w, v)`` of one entry, per (1); ``one`` is 1 in the factors' dtype, ``shift`` is
    ``1 - unobserved`` (0 by default, so that ``w = alpha |r|`` exactly)."""
    if implicit:
        if r > 0:
            return alpha * r + shift, one + alpha * r
        return alpha * abs(r) + shift, one - one
    return one, r


@kernel(fastmath=True, inline=True)
def _gather(start, end, indices, data, Y, alpha, shift, one, implicit, Z, w, v, limit):  # pragma: no cover
    """Copy factor rows ``Y[indices[start:end]]`` into ``Z[:end - start]`` and their ``(w, v)``
    into ``w``, ``v``, prefetching ``PREFETCH_DISTANCE`` rows ahead (up to entry ``limit``)."""
    f = Y.shape[1]
    for m in range(end - start):
        idx = start + m
        ahead = idx + PREFETCH_DISTANCE
        if ahead < limit:
            row = indices[ahead]
            for k in range(0, f, 16):
                prefetch(Y, row, k)
        y = Y[indices[idx]]
        for k in range(f):
            Z[m, k] = y[k]
        w[m], v[m] = _weights(data[idx], alpha, shift, one, implicit)


@kernel(fastmath=True, inline=True)
def _dot4(Z, i, p):  # pragma: no cover
    """``Z[i:i+4] @ p`` as four scalars, one pass over ``p``."""
    s0 = s1 = s2 = s3 = p[0] - p[0]
    for k in range(p.shape[0]):
        pk = p[k]
        s0 += Z[i, k] * pk
        s1 += Z[i + 1, k] * pk
        s2 += Z[i + 2, k] * pk
        s3 += Z[i + 3, k] * pk
    return s0, s1, s2, s3


@kernel(fastmath=True, inline=True)
def _axpy4(out, c0, c1, c2, c3, Z, i):  # pragma: no cover
    """``out += Z[i:i+4].T @ (c0, c1, c2, c3)``."""
    for k in range(out.shape[0]):
        out[k] += (c0 * Z[i, k] + c1 * Z[i + 1, k]) + (c2 * Z[i + 2, k] + c3 * Z[i + 3, k])


@kernel(fastmath=True, inline=True)
def _buffered_product(Z, w, v, n, p, out, residual):  # pragma: no cover
    """``out += Z[:n].T @ c`` with ``c = w * (Z[:n] @ p)``, or ``c = v - w * (Z[:n] @ p)`` when
    ``residual``: the row's part of ``A p`` (or of ``b - A x``) from its gathered factor rows."""
    f = p.shape[0]
    i = 0
    while i + 4 <= n:
        d0, d1, d2, d3 = _dot4(Z, i, p)
        c0, c1, c2, c3 = w[i] * d0, w[i + 1] * d1, w[i + 2] * d2, w[i + 3] * d3
        if residual:
            c0, c1, c2, c3 = v[i] - c0, v[i + 1] - c1, v[i + 2] - c2, v[i + 3] - c3
        _axpy4(out, c0, c1, c2, c3, Z, i)
        i += 4
    while i < n:
        d = p[0] - p[0]
        for k in range(f):
            d += Z[i, k] * p[k]
        c = w[i] * d
        if residual:
            c = v[i] - c
        for k in range(f):
            out[k] += c * Z[i, k]
        i += 1


@kernel(fastmath=True, inline=True)
def _indirect_product(
    start, end, indices, data, alpha, shift, one, implicit, Y, p, out, residual
):  # pragma: no cover
    """:func:`_buffered_product` for a row too long for the buffer, read through ``indices``."""
    f = p.shape[0]
    for idx in range(start, end):
        ahead = idx + PREFETCH_DISTANCE
        if ahead < end:
            row = indices[ahead]
            for k in range(0, f, 16):
                prefetch(Y, row, k)
        y = Y[indices[idx]]
        wi, vi = _weights(data[idx], alpha, shift, one, implicit)
        d = p[0] - p[0]
        for k in range(f):
            d += y[k] * p[k]
        c = wi * d
        if residual:
            c = vi - c
        for k in range(f):
            out[k] += c * y[k]


@kernel(fastmath=True, inline=True)
def _cholesky_upper(A, n):  # pragma: no cover
    """In place ``A[:n, :n] = U^T U`` (``U`` upper, read from/written to the upper triangle),
    right-looking with contiguous row updates. Returns False when a pivot is not positive (it
    is clamped to ``TINY``: the row's system was singular). For the small Woodbury and NNLS
    systems; :func:`_cholesky_chunked` for the ``f x f`` ones."""
    ok = True
    for j in range(n):
        Aj = A[j]
        pivot = Aj[j]
        if not pivot > TINY:
            ok = False
            pivot = TINY
        s = np.sqrt(pivot)
        Aj[j] = s
        inv = 1 / s
        for k in range(j + 1, n):
            Aj[k] *= inv
        for i in range(j + 1, n):
            a = Aj[i]
            Ai = A[i]
            for k in range(i, n):
                Ai[k] -= a * Aj[k]
    return ok


@kernel(fastmath=True, inline=True)
def _cholesky_chunked(A, n, P):  # pragma: no cover
    """In place ``A[:n, :n] = U^T U`` on the upper triangle of a row-padded ``A`` (its width a
    multiple of ``CHUNK``, padding zero); ``P`` is an ``8 x width`` scratch.

    Right-looking, blocked by panels of 8 rows: a finished panel is copied to ``P`` and the
    trailing rows get one rank-8 update each, run over whole SIMD chunks from the diagonal
    rounded down (entries left of the diagonal are scratch). Returns False when a pivot is not
    positive (it is clamped to ``TINY``: the row's system was singular).
    """
    width = A.shape[1]
    chunks = width // CHUNK
    ok = True
    for jb in range(0, n, 8):
        je = min(jb + 8, n)
        for j in range(jb, je):
            pivot = A[j, j]
            if not pivot > TINY:
                ok = False
                pivot = TINY
            s = np.sqrt(pivot)
            A[j, j] = s
            inv = 1 / s
            for k in range(j + 1, width):
                A[j, k] *= inv
            t = j - jb
            for k in range(width):
                P[t, k] = A[j, k]
            Pt = P[t]
            for i in range(j + 1, je):
                a = Pt[i]
                Ai = A[i]
                for c in range(i // CHUNK, chunks):
                    base = np.uint64(c * CHUNK)
                    for l in range(CHUNK):
                        k = base + np.uint64(l)
                        Ai[k] -= a * Pt[k]
        for t in range(je - jb, 8):
            for k in range(width):
                P[t, k] = 0
        for i in range(jb + 8, n):  # (not range(je, n): LLVM must see i >= 0 to vectorise)
            c0, c1, c2, c3 = P[0, i], P[1, i], P[2, i], P[3, i]
            c4, c5, c6, c7 = P[4, i], P[5, i], P[6, i], P[7, i]
            Ai = A[i]
            for c in range(i // CHUNK, chunks):
                base = np.uint64(c * CHUNK)
                for l in range(CHUNK):
                    k = base + np.uint64(l)
                    t0 = c0 * P[0, k] + c1 * P[1, k]
                    t1 = c2 * P[2, k] + c3 * P[3, k]
                    t2 = c4 * P[4, k] + c5 * P[5, k]
                    t3 = c6 * P[6, k] + c7 * P[7, k]
                    Ai[k] -= (t0 + t1) + (t2 + t3)
    return ok


@kernel(fastmath=True, inline=True)
def _cholesky_solve_upper(U, n, b):  # pragma: no cover
    """Solve ``U^T U x = b`` in place in ``b[:n]`` (``U`` from a Cholesky above)."""
    for j in range(n):
        z = b[j] / U[j, j]
        b[j] = z
        for k in range(j + 1, n):
            b[k] -= z * U[j, k]
    for j in range(n - 1, -1, -1):
        s = b[j]
        for k in range(j + 1, n):
            s -= U[j, k] * b[k]
        b[j] = s / U[j, j]


@kernel(fastmath=True, inline=True)
def _syrk8(A, b, Z, w, v, i):  # pragma: no cover
    """``A += Z[i:i+8].T diag(w) Z[i:i+8]`` (upper part, whole chunks), ``b += Z[i:i+8].T v``."""
    f = A.shape[0]
    chunks = A.shape[1] // CHUNK
    w0, w1, w2, w3, w4, w5, w6, w7 = (
        w[i],
        w[i + 1],
        w[i + 2],
        w[i + 3],
        w[i + 4],
        w[i + 5],
        w[i + 6],
        w[i + 7],
    )
    Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7 = (
        Z[i],
        Z[i + 1],
        Z[i + 2],
        Z[i + 3],
        Z[i + 4],
        Z[i + 5],
        Z[i + 6],
        Z[i + 7],
    )
    for j in range(f):
        c0, c1, c2, c3 = w0 * Z[i, j], w1 * Z[i + 1, j], w2 * Z[i + 2, j], w3 * Z[i + 3, j]
        c4, c5, c6, c7 = w4 * Z[i + 4, j], w5 * Z[i + 5, j], w6 * Z[i + 6, j], w7 * Z[i + 7, j]
        Aj = A[j]
        for c in range(j // CHUNK, chunks):
            base = np.uint64(c * CHUNK)
            for l in range(CHUNK):
                k = base + np.uint64(l)
                t0 = c0 * Z0[k] + c1 * Z1[k]
                t1 = c2 * Z2[k] + c3 * Z3[k]
                t2 = c4 * Z4[k] + c5 * Z5[k]
                t3 = c6 * Z6[k] + c7 * Z7[k]
                Aj[k] += (t0 + t1) + (t2 + t3)
    v0, v1, v2, v3, v4, v5, v6, v7 = (
        v[i],
        v[i + 1],
        v[i + 2],
        v[i + 3],
        v[i + 4],
        v[i + 5],
        v[i + 6],
        v[i + 7],
    )
    for k in range(f):
        t0 = v0 * Z[i, k] + v1 * Z[i + 1, k]
        t1 = v2 * Z[i + 2, k] + v3 * Z[i + 3, k]
        t2 = v4 * Z[i + 4, k] + v5 * Z[i + 5, k]
        t3 = v6 * Z[i + 6, k] + v7 * Z[i + 7, k]
        b[k] += (t0 + t1) + (t2 + t3)


# conjugate gradient -------------------------------------------------------------------------
@kernel(fastmath=True)
def _cg_row(
    start, end, indices, data, x, Y, gram_diag, lam, alpha, shift, implicit, cg_steps, r, p, ap, Z, w, v
):  # pragma: no cover
    """``cg_steps`` CG steps on one row's system (1), warm-started from ``x`` (in place).

    Pass 0 computes the residual ``r = b - A x``, pass ``s > 0`` the product ``A p`` of CG
    step ``s``: both from a contiguous copy of the row's factor rows when it fits (the copy
    loop has independent loads only, so many cache misses are in flight at once), else through
    the indices. (One call site per helper keeps the compiled code small.)
    """
    f = x.shape[0]
    zero = x.dtype.type(0)
    one = x.dtype.type(1)
    n = end - start
    buffered = n <= Z.shape[0]
    if buffered:
        _gather(start, end, indices, data, Y, alpha, shift, one, implicit, Z, w, v, indices.shape[0])
    rs = zero
    for step in range(cg_steps + 1):
        residual = step == 0
        source = x if residual else p
        out = r if residual else ap
        sign = -one if residual else one
        for k in range(f):
            out[k] = sign * (gram_diag[k] + lam) * source[k]
        if buffered:
            _buffered_product(Z, w, v, n, source, out, residual)
        else:
            _indirect_product(
                start, end, indices, data, alpha, shift, one, implicit, Y, source, out, residual
            )
        if residual:
            for k in range(f):
                p[k] = r[k]
                rs += r[k] * r[k]
            if rs < 1e-20:
                return
            continue
        pap = zero
        for k in range(f):
            pap += p[k] * ap[k]
        if not pap > 0:
            return
        alpha_step = rs / pap
        rs_new = zero
        for k in range(f):
            x[k] += alpha_step * p[k]
            r[k] -= alpha_step * ap[k]
            rs_new += r[k] * r[k]
        if rs_new < 1e-20:
            return
        beta = rs_new / rs
        for k in range(f):
            p[k] = r[k] + beta * p[k]
        rs = rs_new


@kernel(fastmath=True)
def _cg_block(
    first,
    last,
    indptr,
    indices,
    data,
    X,
    Y,
    gram_diag,
    lam,
    alpha,
    unobserved,
    implicit,
    cg_steps,
):  # pragma: no cover
    """Rows ``first:last`` of :func:`als_cg`; the parallel loops call one such function per block.

    Determinism: LLVM guards vectorised loops that store to one array and load another with a
    run-time overlap test on the addresses, and falls back to scalar code, whose sums round
    differently, when arrays are close. So all scratch lives in one arena with the same layout
    in every block, padded at both ends (``ARENA_PAD``) so that it is never close to the
    caller's arrays: the test then always takes the same path, whatever the addresses, the
    block or the thread, and a row's result depends on the row alone.
    """
    f = X.shape[1]
    fp = (f + 15) // 16 * 16
    arena = np.empty(2 * ARENA_PAD + 3 * fp + BUFFER_ROWS * fp + 2 * BUFFER_ROWS, X.dtype)
    o = ARENA_PAD
    r = arena[o : o + f]
    p = arena[o + fp : o + fp + f]
    ap = arena[o + 2 * fp : o + 2 * fp + f]
    o += 3 * fp
    Z = arena[o : o + BUFFER_ROWS * f].reshape((BUFFER_ROWS, f))
    o += BUFFER_ROWS * fp
    w = arena[o : o + BUFFER_ROWS]
    v = arena[o + BUFFER_ROWS : o + 2 * BUFFER_ROWS]
    shift = X.dtype.type(1) - unobserved
    for u in range(first, last):
        start, end = indptr[u], indptr[u + 1]
        x = X[u]
        if start == end:
            x[:] = 0
            continue
        _cg_row(
            start,
            end,
            indices,
            data,
            x,
            Y,
            gram_diag,
            lam[u],
            alpha,
            shift,
            implicit,
            cg_steps,
            r,
            p,
            ap,
            Z,
            w,
            v,
        )


@kernel(parallel=True, fastmath=True)
def als_cg(
    indptr, indices, data, X, Y, gram_diag, lam, alpha, unobserved, implicit, cg_steps, blocks
):  # pragma: no cover
    """``cg_steps`` conjugate-gradient steps on (1) for every row, warm-started from ``X``;
    updates ``X`` in place.

    ``gram_diag``: the diagonal of ``a0 G`` (``G`` diagonal, see the module doc; zeros for
    explicit ratings); ``lam``: the rows' ``lam_u`` (:func:`row_regularization`), ``alpha`` and
    ``unobserved`` (``a0``): scalars, all of ``X``'s dtype. ``blocks`` from
    :func:`row_blocks`. Like ``implicit``'s CG: a row stops early when its squared residual
    drops below ``1e-20``.
    """
    for bl in prange(len(blocks) - 1):
        _cg_block(
            blocks[bl],
            blocks[bl + 1],
            indptr,
            indices,
            data,
            X,
            Y,
            gram_diag,
            lam,
            alpha,
            unobserved,
            implicit,
            cg_steps,
        )


def als_cg_reference(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    gram: np.ndarray,
    lam: np.ndarray,
    alpha: float,
    unobserved: float,
    implicit: bool,
    cg_steps: int,
) -> None:
    """NumPy twin of :func:`als_cg` (``gram`` full or diagonal), dense ``A`` per row."""
    for u in range(len(indptr) - 1):
        if indptr[u] == indptr[u + 1]:
            X[u] = 0
            continue
        A, b = _row_system(indptr, indices, data, u, Y, gram, float(lam[u]), alpha, unobserved, implicit)
        x = X[u].astype(np.float64)
        r = b - A @ x
        p = r.copy()
        rs = r @ r
        if rs < 1e-20:
            continue
        for _ in range(cg_steps):
            ap = A @ p
            pap = p @ ap
            if not pap > 0:
                break
            step = rs / pap
            x += step * p
            r -= step * ap
            rs_new = r @ r
            if rs_new < 1e-20:
                break
            p = r + rs_new / rs * p
            rs = rs_new
        X[u] = x


# exact solve --------------------------------------------------------------------------------
@kernel(fastmath=True)
def _direct_row(
    start, end, indices, data, x, Y, gram_diag, lam, alpha, shift, implicit, A, b, Z, w, v, P
):  # pragma: no cover
    """Form (1) in ``A`` (upper triangle, rank-8 updates from gathered chunks of the row's
    factor rows) and solve it by Cholesky. ``A``, ``Z`` are padded to a width multiple of
    ``CHUNK`` with zero padding columns."""
    f = x.shape[0]
    one = x.dtype.type(1)
    A[:, :] = 0
    b[:] = 0
    for j in range(f):
        A[j, j] = gram_diag[j] + lam
    cap = Z.shape[0]
    for chunk_start in range(start, end, cap):
        chunk_end = min(chunk_start + cap, end)
        m = chunk_end - chunk_start
        _gather(
            chunk_start, chunk_end, indices, data, Y, alpha, shift, one, implicit, Z, w, v, indices.shape[0]
        )
        padded = (m + 7) // 8 * 8
        for i in range(m, padded):
            w[i] = 0
            v[i] = 0
            Z[i, :] = 0
        for i in range(0, padded, 8):
            _syrk8(A, b, Z, w, v, i)
    ok = _cholesky_chunked(A, f, P)
    _cholesky_solve_upper(A, f, b)
    for j in range(f):
        x[j] = b[j]
    return ok


@kernel(fastmath=True)
def _woodbury_row(
    start, end, indices, data, x, Y, gram_diag, lam, alpha, shift, implicit, Z, C, beta, dinv
):  # pragma: no cover
    """Solve (1) with diagonal ``D = G + lam I`` by the Woodbury identity, in float64::

        x = D^-1 Y_u^T beta,   (W^-1 + Y_u D^-1 Y_u^T) beta = W^-1 v

    over the row's ``n`` entries with ``w > 0`` (entries with ``w = 0`` have ``v = 0`` when
    ``shift > 0``, or ``shift = 0`` and ``alpha > 0``, which the caller checks). Costs
    ``O(n^2 f + n^3)``.
    """
    f = x.shape[0]
    one = x.dtype.type(1)
    for j in range(f):
        dinv[j] = 1.0 / (np.float64(gram_diag[j]) + np.float64(lam))
    m = 0
    for idx in range(start, end):
        ahead = idx + PREFETCH_DISTANCE
        if ahead < end:
            for k in range(0, f, 16):
                prefetch(Y, indices[ahead], k)
        wi, vi = _weights(data[idx], alpha, shift, one, implicit)
        if not wi > 0:
            continue
        y = Y[indices[idx]]
        for j in range(f):
            Z[m, j] = y[j]
        beta[m] = np.float64(vi) / np.float64(wi)
        C[m, m] = 1.0 / np.float64(wi)
        m += 1
    scratch = Z[m]
    for a in range(m):
        za = Z[a]
        for j in range(f):
            scratch[j] = za[j] * dinv[j]
        for c in range(a, m):
            zc = Z[c]
            s = 0.0
            for j in range(f):
                s += scratch[j] * zc[j]
            if c == a:
                C[a, a] += s
            else:
                C[a, c] = s
    ok = _cholesky_upper(C, m)
    _cholesky_solve_upper(C, m, beta)
    for j in range(f):
        scratch[j] = 0.0
    for a in range(m):
        ba = beta[a]
        za = Z[a]
        for j in range(f):
            scratch[j] += ba * za[j]
    for j in range(f):
        x[j] = scratch[j] * dinv[j]
    return ok


@kernel(fastmath=True)
def _exact_block(
    first, last, indptr, indices, data, X, Y, gram_diag, lam, alpha, unobserved, implicit
):  # pragma: no cover
    """Rows ``first:last`` of :func:`als_exact`; returns their failure count."""
    f = X.shape[1]
    width = (f + CHUNK - 1) // CHUNK * CHUNK
    small = int(WOODBURY_FRACTION * f)
    shift = X.dtype.type(1) - unobserved
    # Woodbury needs w > 0 wherever v != 0 (see _woodbury_row)
    woodbury_ok = (not implicit) or shift > 0 or (shift == 0 and alpha > 0)
    # scratch in padded arenas, as in _cg_block
    arena = np.zeros(2 * ARENA_PAD + (f + 8 + BUFFER_ROWS) * width + width + 2 * BUFFER_ROWS, X.dtype)
    o = ARENA_PAD
    A = arena[o : o + f * width].reshape((f, width))
    o += f * width
    P = arena[o : o + 8 * width].reshape((8, width))
    o += 8 * width
    Z = arena[o : o + BUFFER_ROWS * width].reshape((BUFFER_ROWS, width))
    o += BUFFER_ROWS * width
    b = arena[o : o + f]
    o += width
    w = arena[o : o + BUFFER_ROWS]
    v = arena[o + BUFFER_ROWS : o + 2 * BUFFER_ROWS]
    sp = (small + 7) // 8 * 8
    fp = (f + 7) // 8 * 8
    arena64 = np.empty(2 * ARENA_PAD + (sp + 1) * f + sp * sp + sp + fp + 8, np.float64)
    o = ARENA_PAD
    Zw = arena64[o : o + (small + 1) * f].reshape((small + 1, f))
    o += (sp + 1) * f + 8
    C = arena64[o : o + small * small].reshape((small, small))
    o += sp * sp
    beta = arena64[o : o + small]
    o += sp
    dinv = arena64[o : o + f]
    failures = 0
    for u in range(first, last):
        start, end = indptr[u], indptr[u + 1]
        x = X[u]
        if start == end:
            x[:] = 0
            continue
        lam_u = lam[u]
        use_woodbury = woodbury_ok and end - start < small
        if use_woodbury:
            for j in range(f):
                if not gram_diag[j] + lam_u > 0:
                    use_woodbury = False
        if use_woodbury:
            ok = _woodbury_row(
                start, end, indices, data, x, Y, gram_diag, lam_u, alpha, shift, implicit, Zw, C, beta, dinv
            )
        else:
            ok = _direct_row(
                start, end, indices, data, x, Y, gram_diag, lam_u, alpha, shift, implicit, A, b, Z, w, v, P
            )
        if not ok:
            failures += 1
    return failures


@kernel(parallel=True, fastmath=True)
def als_exact(
    indptr, indices, data, X, Y, gram_diag, lam, alpha, unobserved, implicit, blocks
):  # pragma: no cover
    """Solve (1) exactly for every row into ``X``; ``G`` diagonal (see the module doc).

    A row with fewer than ``WOODBURY_FRACTION * f`` entries is solved by Woodbury in float64
    (when every ``w`` is positive where ``v`` is not zero, and ``D > 0``); any other row forms ``A`` and
    factors it by Cholesky. Returns the number of rows whose system was not positive definite
    (solved with a clamped pivot).
    """
    failures = 0
    for bl in prange(len(blocks) - 1):
        failures += _exact_block(
            blocks[bl],
            blocks[bl + 1],
            indptr,
            indices,
            data,
            X,
            Y,
            gram_diag,
            lam,
            alpha,
            unobserved,
            implicit,
        )
    return failures


def als_exact_reference(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    gram: np.ndarray,
    lam: np.ndarray,
    alpha: float,
    unobserved: float,
    implicit: bool,
) -> None:
    """NumPy twin of :func:`als_exact` (``gram`` full or diagonal): ``np.linalg.solve`` per row."""
    for u in range(len(indptr) - 1):
        if indptr[u] == indptr[u + 1]:
            X[u] = 0
            continue
        A, b = _row_system(indptr, indices, data, u, Y, gram, float(lam[u]), alpha, unobserved, implicit)
        X[u] = np.linalg.solve(A, b)


# non-negative least squares -----------------------------------------------------------------
@kernel(fastmath=True)
def _nnls_row(A, b, x, passive, L, z, grad, max_iter):  # pragma: no cover
    """Lawson-Hanson active set for ``min 1/2 x^T A x - b^T x`` s.t. ``x >= 0`` (``A``
    positive definite, float64), the normal-equation form of ``min |M x - y|``: ``x`` in place.

    Each inner step solves the passive subsystem ``A[P, P] z_P = b_P`` by Cholesky.
    """
    f = A.shape[0]
    for j in range(f):
        x[j] = 0.0
        passive[j] = False
    tolerance = 1e-10 * (1.0 + np.abs(b).max())
    for _ in range(max_iter):
        # gradient of the negative objective: b - A x
        best, best_j = tolerance, -1
        for j in range(f):
            g = b[j]
            for k in range(f):
                g -= A[j, k] * x[k]
            grad[j] = g
            if not passive[j] and g > best:
                best, best_j = g, j
        if best_j < 0:
            return True
        passive[best_j] = True
        while True:
            # z_P = A[P, P]^-1 b_P
            m = 0
            for j in range(f):
                if passive[j]:
                    c = 0
                    for k in range(f):
                        if passive[k]:
                            L[m, c] = A[j, k]
                            c += 1
                    z[m] = b[j]
                    m += 1
            _cholesky_upper(L, m)
            _cholesky_solve_upper(L, m, z)
            # all positive: accept; else step back to the boundary and drop the zeros
            step = 1.0
            m = 0
            for j in range(f):
                if passive[j]:
                    if z[m] <= 0:
                        t = x[j] / (x[j] - z[m])
                        if t < step:
                            step = t
                    m += 1
            m = 0
            for j in range(f):
                if passive[j]:
                    x[j] += step * (z[m] - x[j])
                    m += 1
            if step >= 1.0:
                break
            for j in range(f):
                if passive[j] and x[j] <= 1e-12 * (1.0 + np.abs(x).max()):
                    x[j] = 0.0
                    passive[j] = False
    return False


@kernel(fastmath=True)
def _nnls_block(
    first, last, indptr, indices, data, X, Y, gram, lam, alpha, unobserved, implicit
):  # pragma: no cover
    """Rows ``first:last`` of :func:`als_nnls`; returns their failure count."""
    f = X.shape[1]
    fp = (f + 7) // 8 * 8
    arena = np.empty(2 * ARENA_PAD + 2 * f * fp + 4 * fp, np.float64)  # as in _cg_block
    o = ARENA_PAD
    A = arena[o : o + f * f].reshape((f, f))
    L = arena[o + f * fp : o + f * fp + f * f].reshape((f, f))
    o += 2 * f * fp
    b = arena[o : o + f]
    x = arena[o + fp : o + fp + f]
    z = arena[o + 2 * fp : o + 2 * fp + f]
    grad = arena[o + 3 * fp : o + 3 * fp + f]
    passive = np.empty(f, np.bool_)
    one = X.dtype.type(1)
    shift = one - unobserved
    failures = 0
    for u in range(first, last):
        start, end = indptr[u], indptr[u + 1]
        if start == end:
            X[u, :] = 0
            continue
        lam_u = np.float64(lam[u])
        for j in range(f):
            for k in range(f):
                A[j, k] = gram[j, k]
            A[j, j] += lam_u
            b[j] = 0.0
        for idx in range(start, end):
            wi, vi = _weights(data[idx], alpha, shift, one, implicit)
            y = Y[indices[idx]]
            for j in range(f):
                a = np.float64(wi) * y[j]
                b[j] += np.float64(vi) * y[j]
                for k in range(f):
                    A[j, k] += a * y[k]
        if not _nnls_row(A, b, x, passive, L, z, grad, 3 * f + 10):
            failures += 1
        for j in range(f):
            X[u, j] = x[j]
    return failures


@kernel(parallel=True, fastmath=True)
def als_nnls(indptr, indices, data, X, Y, gram, lam, alpha, unobserved, implicit, blocks):  # pragma: no cover
    """Solve (1) for every row under ``x >= 0`` (Lawson-Hanson, float64) into ``X``; ``gram``
    is the full ``f x f`` ``unobserved * Y^T Y``. Returns the number of rows that hit the iteration limit."""
    failures = 0
    for bl in prange(len(blocks) - 1):
        failures += _nnls_block(
            blocks[bl],
            blocks[bl + 1],
            indptr,
            indices,
            data,
            X,
            Y,
            gram,
            lam,
            alpha,
            unobserved,
            implicit,
        )
    return failures


def als_nnls_reference(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    gram: np.ndarray,
    lam: np.ndarray,
    alpha: float,
    unobserved: float,
    implicit: bool,
) -> None:
    """NumPy/SciPy twin of :func:`als_nnls`: with ``A = L L^T``, ``min 1/2 x^T A x - b^T x`` over
    ``x >= 0`` is ``min |L^T x - L^-1 b|``, which ``scipy.optimize.nnls`` solves."""
    import scipy.optimize

    for u in range(len(indptr) - 1):
        if indptr[u] == indptr[u + 1]:
            X[u] = 0
            continue
        A, b = _row_system(indptr, indices, data, u, Y, gram, float(lam[u]), alpha, unobserved, implicit)
        L = np.linalg.cholesky(A)
        X[u] = scipy.optimize.nnls(L.T, np.linalg.solve(L, b))[0]


# loss ---------------------------------------------------------------------------------------
@kernel(parallel=True, fastmath=True)
def _loss_rows(indptr, indices, data, X, Y, alpha, unobserved, implicit, out):  # pragma: no cover
    """Per row ``u``, float64: implicit ``sum_j [c (p - s)^2 - unobserved s^2]``, explicit
    ``sum_j (r - s)^2``, with ``s = x_u . y_j`` over the row's entries."""
    f = X.shape[1]
    for u in prange(len(indptr) - 1):
        total = 0.0
        x = X[u]
        for idx in range(indptr[u], indptr[u + 1]):
            y = Y[indices[idx]]
            s = 0.0
            for k in range(f):
                s += np.float64(x[k]) * np.float64(y[k])
            r = np.float64(data[idx])
            if implicit:
                c = 1.0 + alpha * abs(r)
                p = 1.0 if r > 0 else 0.0
                total += c * (p - s) * (p - s) - unobserved * s * s
            else:
                total += (r - s) * (r - s)
        out[u] = total


def als_loss(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    user_lam: np.ndarray,
    item_lam: np.ndarray,
    alpha: float,
    unobserved: float,
    implicit: bool,
) -> float:
    """The ALS objective for users x items CSR ``(indptr, indices, data)`` and factors ``X, Y``::

        implicit:  sum_{(u,i) stored} c_ui (p_ui - x_u . y_i)^2
                   + unobserved * sum_{(u,i) not stored} (x_u . y_i)^2  + penalty
        explicit:  sum_{(u,i) stored} (r_ui - x_u . y_i)^2  + penalty
        penalty  = sum_u user_lam[u] |x_u|^2 + sum_i item_lam[i] |y_i|^2

    with ``c = 1 + alpha |r|``, ``p = 1 if r > 0 else 0`` and the rows' ``lam`` of (1)
    (:func:`row_regularization`). The implicit sum over the pairs not stored is
    ``unobserved * sum(X^T X * Y^T Y)`` less a correction per stored entry. Float64,
    deterministic (per-row partial sums).
    """
    X64 = np.asarray(X)
    Y64 = np.asarray(Y)
    rows = np.empty(len(indptr) - 1, dtype=np.float64)
    _loss_rows(indptr, indices, data, X64, Y64, float(alpha), float(unobserved), bool(implicit), rows)
    total = float(np.sum(rows))
    if implicit:
        gx = X64.T.astype(np.float64) @ X64.astype(np.float64)
        gy = Y64.T.astype(np.float64) @ Y64.astype(np.float64)
        total += float(unobserved) * float(np.sum(gx * gy))
    norms_x = np.einsum("ij,ij->i", X64, X64, dtype=np.float64)
    norms_y = np.einsum("ij,ij->i", Y64, Y64, dtype=np.float64)
    penalty = float(np.asarray(user_lam, np.float64) @ norms_x + np.asarray(item_lam, np.float64) @ norms_y)
    return total + penalty


def als_loss_part(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    lam: np.ndarray,
    alpha: float,
    unobserved: float,
    implicit: bool,
    entries: bool = True,
) -> float:
    """The part of :func:`als_loss` that belongs to the rows of a CSR block (rows ``X``, its
    indices pointing into ``Y``; ``lam`` the rows' regularisation): their penalty
    ``sum_u lam_u |x_u|^2`` and, with ``entries``, their entries' terms. For distributed
    training (Spark's blocks): the parts of every user block (with entries) and every item
    block (without), plus ``unobserved * sum(X^T X * Y^T Y)`` for implicit feedback, add up to
    :func:`als_loss`."""
    total = 0.0
    if entries:
        rows = np.empty(len(indptr) - 1, dtype=np.float64)
        _loss_rows(
            indptr,
            indices,
            data,
            np.asarray(X),
            np.asarray(Y),
            float(alpha),
            float(unobserved),
            bool(implicit),
            rows,
        )
        total = float(np.sum(rows))
    norms = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    return total + float(np.asarray(lam, np.float64) @ norms)


def als_loss_reference(
    matrix: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    user_lam: np.ndarray,
    item_lam: np.ndarray,
    alpha: float,
    unobserved: float,
    implicit: bool,
) -> float:
    """Dense twin of :func:`als_loss` on a dense ``matrix`` (zeros are absent entries)."""
    R = np.asarray(matrix, dtype=np.float64)
    S = X.astype(np.float64) @ Y.astype(np.float64).T
    stored = R != 0
    if implicit:
        C = np.where(stored, 1 + alpha * np.abs(R), unobserved)
        P = (R > 0).astype(np.float64)
        loss = float(np.sum(C * (P - S) ** 2))
    else:
        loss = float(np.sum(((R - S) ** 2)[stored]))
    penalty = np.asarray(user_lam, np.float64) @ (X.astype(np.float64) ** 2).sum(axis=1)
    penalty += np.asarray(item_lam, np.float64) @ (Y.astype(np.float64) ** 2).sum(axis=1)
    return loss + float(penalty)
