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

__all__ = [
    "dynamic_schedule",
    "kernel",
    "num_threads",
    "prange",
    "prefetch",
    "thread_limits",
    "warn_if_oversubscribed",
]

F = TypeVar("F", bound=Callable[..., Any])

JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")


def kernel(*, parallel: bool = False, fastmath: bool = False, inline: bool = False) -> Callable[[F], F]:
    """Compile a function as a recforge kernel: ``nopython``, ``nogil``, cached on disk.

    ``inline=True`` is for small helpers called from other kernels: numba compiles each
    function into its own module and does not let LLVM inline across them, so a helper called
    in an inner loop would pay a full call (arrays passed as structs on the stack) every time.
    Inlined helpers are expanded into the caller's numba IR instead.
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


def _prefetch_python(array: Any, row: int, col: int) -> None:
    """Without the JIT, a prefetch hint does nothing."""


def _make_prefetch() -> Callable[..., None]:
    """``prefetch(array, row, col)``: hint the CPU to load ``array[row, col]``'s cache line.

    A compiled ``llvm.prefetch`` (read, high locality) on a 2-D array element, for gathers of
    factor rows in random order: issued a few rows ahead, the loads overlap instead of each
    waiting on memory in turn. No bounds check (a prefetch never faults).
    """
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx: Any, array: Any, row: Any, col: Any) -> Any:
        if not isinstance(array, types.Array) or array.ndim != 2:
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            array_type = signature.args[0]
            ary = context.make_array(array_type)(context, builder, args[0])
            index = [
                context.cast(builder, a, t, types.intp)
                for a, t in zip(args[1:], signature.args[1:], strict=True)
            ]
            pointer = cgutils.get_item_pointer(
                context, builder, array_type, ary, index, wraparound=False, boundscheck=False
            )
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            builder.call(fn, [builder.bitcast(pointer, i8p), i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.void(array, row, col), codegen

    return prefetch


prefetch: Callable[..., None] = _prefetch_python if JIT_DISABLED else _make_prefetch()


def num_threads(requested: int = 0) -> int:
    """The number of numba threads a call should use: ``requested`` when positive; ``0`` (the one
    spelling of "all cores" in recforge's parameters) means all."""
    available = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    if requested <= 0:
        return available
    return min(int(requested), available)


@contextmanager
def thread_limits(numba_threads: int = 0, blas_threads: int | None = None) -> Iterator[None]:
    """Pin numba's and BLAS's thread pools for the duration of a block.

    ``numba_threads`` ``0`` means all cores; ``blas_threads`` ``None`` leaves BLAS as it is.
    Both are restored on exit.
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


def _blas_threads() -> int:
    """The largest thread count among the BLAS pools loaded in this process (1 if unknown)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return 1
    counts = [
        int(pool.get("num_threads") or 1) for pool in threadpool_info() if pool.get("user_api") == "blas"
    ]
    return max(counts, default=1)


def warn_if_oversubscribed() -> None:
    """Warn once when BLAS threads and numba threads together exceed the cores.

    Kernels that run numba ``prange`` loops while BLAS runs (per row, or beside them) slow
    down many times when both pools use every core. recforge pins BLAS to one thread around its
    kernels (:func:`thread_limits`), so this warns, once, only when that cannot hold:

    * a BLAS pool still runs several threads when called inside ``thread_limits(blas_threads=1)``
      (threadpoolctl could not control that BLAS), or
    * an environment setting (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``)
      explicitly asks for more BLAS threads than one alongside several numba threads, so BLAS
      work outside recforge's kernels (scoring beside a fit) will fight them.
    """
    global _warned
    if _warned:
        return
    cores = os.cpu_count() or 1
    threads = numba.get_num_threads()
    if threads <= 1:
        return
    message = None
    live = _blas_threads()
    if live > 1 and live * threads > cores:
        message = (
            f"BLAS runs {live} threads beside {threads} numba threads on {cores} cores and could "
            "not be pinned to 1; set OPENBLAS_NUM_THREADS=1 (or MKL_NUM_THREADS=1) for training"
        )
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(name)
        if message is None and value and value.isdigit() and int(value) > 1 and int(value) * threads > cores:
            message = (
                f"{name}={value} with {threads} numba threads oversubscribes "
                f"{cores} cores; set {name}=1 for training"
            )
    if message is not None:
        _warned = True
        warnings.warn(message, RuntimeWarning, stacklevel=2)
