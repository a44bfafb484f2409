"""Binary search in a sorted slice, the one used wherever a kernel asks "is this item in that
row?" (a CSR row's sorted column indices, a sorted exclusion list).

``lower_bound(a, start, stop, x)`` is the first position ``p`` in ``[start, stop)`` with
``a[p] >= x`` (``stop`` when there is none), so ``x`` is present exactly when ``p < stop`` and
``a[p] == x``. Inlined into the calling kernels (they call it in inner loops).
"""

from __future__ import annotations

import numpy as np

from recforge._numba import kernel

__all__ = ["contains", "lower_bound"]


@kernel(inline=True)
def lower_bound(a: np.ndarray, start: int, stop: int, x: int) -> int:  # pragma: no cover - compiled
    """The first ``p`` in ``[start, stop)`` with ``a[p] >= x``, else ``stop`` (``a`` sorted)."""
    lo = start
    hi = stop
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@kernel(inline=True)
def contains(a: np.ndarray, start: int, stop: int, x: int) -> bool:  # pragma: no cover - compiled
    """Whether the sorted slice ``a[start:stop]`` holds ``x``."""
    p = lower_bound(a, start, stop, x)
    return p < stop and a[p] == x
