"""The one door to numba.

Every kernel is compiled through :func:`kernel`, so compile options (on-disk cache, ``nogil``,
``parallel``) are set in one place. With ``NUMBA_DISABLE_JIT=1`` in the environment numba turns
``njit`` into the identity and ``prange`` into ``range``, so every kernel runs as plain Python:
that is how kernels are debugged and how the tests compare them with their NumPy twins
without the JIT in the way.

Thread counts: numba kernels and BLAS each keep a thread pool. Running both pools at full
width at once oversubscribes the cores; :func:`thread_limits` pins both for a block of work, and
:func:`warn_if_oversubscribed` says so, once, when the environment sets them to fight.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numba
from numba import prange

__all__ = ["dynamic_schedule", "kernel", "num_threads", "prange", "thread_limits", "warn_if_oversubscribed"]

F = TypeVar("F", bound=Callable[..., Any])

JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")


def kernel(*, parallel: bool = False, fastmath: bool = False, inline: bool = False) -> Callable[[F], F]:
    """Compile a function as a recforge kernel: ``nopython``, ``nogil``, cached on disk.

    ``inline``: a small helper whose body numba pastes into each kernel that calls it (for
    per-row checks called millions of times, where a call costs as much as the work).
    """

    def wrap(fn: F) -> F:
        if JIT_DISABLED:
            return fn
        compiled: Any = numba.njit(
            cache=True,
            nogil=True,
            parallel=parallel,
            fastmath=fastmath,
            inline="always" if inline else "never",
        )(fn)
        return compiled

    return wrap


def num_threads(requested: int | None = None) -> int:
    """The number of numba threads a call should use: ``requested`` when positive, else all."""
    available = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    if requested is None or requested <= 0:
        return available
    return min(int(requested), available)


@contextmanager
def thread_limits(numba_threads: int | None = None, blas_threads: int | None = None) -> Iterator[None]:
    """Pin numba's and BLAS's thread pools for the duration of a block.

    ``numba_threads`` <= 0 or ``None`` means all cores; ``blas_threads`` ``None`` leaves BLAS as
    it is. Both are restored on exit.
    """
    previous = numba.get_num_threads()
    numba.set_num_threads(num_threads(numba_threads))
    try:
        if blas_threads is None:
            yield
        else:
            with _blas_controller().limit(limits=int(blas_threads), user_api="blas"):
                yield
    finally:
        numba.set_num_threads(previous)


_controller: Any = None


def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries, looked up once (a fresh lookup costs
    about a millisecond, too much per call on a serving path). SciPy's BLAS, the one numba's
    ``np.dot`` calls, is loaded first so that it is among them."""
    global _controller
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


@contextmanager
def dynamic_schedule(chunk: int = 1) -> Iterator[None]:
    """Hand ``prange`` iterations to threads ``chunk`` at a time as they free up, instead of one
    equal share each up front: for loops whose iterations are few and heavy (blocks of a
    blocked product), where one slow thread (a busy core) would otherwise hold up the rest."""
    with numba.parallel_chunksize(chunk):
        yield


_warned = False


def warn_if_oversubscribed() -> None:
    """Warn once when BLAS threads and numba threads together exceed the cores.

    Kernels that run numba ``prange`` loops while calling BLAS per row (or run beside BLAS calls)
    slow down many times when both pools use every core. The fix is to set
    ``OPENBLAS_NUM_THREADS=1`` (or ``OMP_NUM_THREADS=1``) or to let recforge pin BLAS inside its
    kernels, which it does; this warning fires only when an explicit environment setting asks
    for more BLAS threads than one alongside several numba threads.
    """
    global _warned
    if _warned:
        return
    cores = os.cpu_count() or 1
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(name)
        if value and value.isdigit() and int(value) > 1 and int(value) * numba.get_num_threads() > cores:
            _warned = True
            warnings.warn(
                f"{name}={value} with {numba.get_num_threads()} numba threads oversubscribes "
                f"{cores} cores; set {name}=1 for training",
                RuntimeWarning,
                stacklevel=2,
            )
            return
