"""Progress for long work: bars on a terminal, plain lines (or nothing) elsewhere."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TextIO

__all__ = ["FitReport", "Progress", "fit_report", "progress", "stage"]

#: ``"auto"``: a bar when stderr is a terminal, a line per iteration otherwise; ``"quiet"``: nothing.
Display = Literal["auto", "bar", "lines", "quiet"]


class Progress(Protocol):
    def advance(self, amount: float = 1) -> None: ...


class _Silent:
    def advance(self, amount: float = 1) -> None:
        pass


class _Bar:
    def __init__(self, bar: object, task: object) -> None:
        self._bar = bar
        self._task = task

    def advance(self, amount: float = 1) -> None:
        self._bar.advance(self._task, amount)  # type: ignore[attr-defined]


@contextmanager
def progress(description: str, total: float | None, enabled: bool | None = None) -> Iterator[Progress]:
    """A progress bar on stderr; silent unless stderr is a terminal (or ``enabled`` is True)."""
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        "[progress.percentage]{task.percentage:>3.0f}%",
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        yield _Bar(bar, bar.add_task(description, total=total))


@contextmanager
def stage(description: str, enabled: bool | None = None) -> Iterator[None]:
    """A spinner with ``description`` on stderr for one step of long work whose fraction done is
    unknown (reading, aggregating, writing); silent unless stderr is a terminal."""
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(description):
        yield


class _FitProgress(Protocol):
    """What a model's ``fit`` callback receives (:class:`recforge.models.base.FitProgress`)."""

    @property
    def iteration(self) -> int: ...

    @property
    def iterations(self) -> int: ...

    @property
    def elapsed(self) -> float: ...

    @property
    def loss(self) -> Callable[[], float]: ...


@dataclass
class FitReport:
    """A ``fit(X, callback=report)`` callback that shows each iteration and keeps the history.

    ``history`` holds one ``{"iteration", "loss", "seconds"}`` per iteration (``loss`` is the
    model's training objective, ``seconds`` since the fit began), what a version's manifest
    records. Computing the loss costs a pass over the data; it is only paid while reporting.
    """

    description: str
    display: Display = "auto"
    stream: TextIO | None = None
    #: where a line goes in ``"lines"`` mode (default: printed to ``stream`` or stderr)
    emit: Callable[[str], None] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    _bar: Any = None
    _task: Any = None

    def __call__(self, step: _FitProgress) -> None:
        loss = float(step.loss())
        self.history.append({"iteration": step.iteration, "loss": loss, "seconds": round(step.elapsed, 3)})
        if self._bar is not None:
            self._bar.update(
                self._task, total=step.iterations, completed=step.iteration, loss=_loss_text(loss)
            )
        elif self._mode() == "lines":
            remaining = step.elapsed / step.iteration * (step.iterations - step.iteration)
            line = (
                f"{self.description}: iteration {step.iteration}/{step.iterations}, loss {_loss_text(loss)}, "
                f"{step.elapsed:.1f} s elapsed, ETA {remaining:.1f} s"
            )
            if self.emit is not None:
                self.emit(line)
            else:
                print(line, file=self.stream or sys.stderr, flush=True)

    def _mode(self) -> Display:
        if self.display != "auto":
            return self.display
        return "bar" if (self.stream or sys.stderr).isatty() else "lines"


@contextmanager
def fit_report(
    description: str,
    display: Display = "auto",
    stream: TextIO | None = None,
    emit: Callable[[str], None] | None = None,
) -> Iterator[FitReport]:
    """A :class:`FitReport` whose bar (iteration i/n, loss, elapsed, ETA) lives as long as the
    context; with ``display="quiet"`` it shows nothing (the history is still kept)."""
    report = FitReport(description, display, stream, emit)
    if report._mode() != "bar":
        yield report
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        "loss {task.fields[loss]}",
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    console = Console(file=report.stream or sys.stderr)
    with Progress(*columns, console=console, transient=False) as bar:
        report._bar, report._task = bar, bar.add_task(description, total=None, loss="-")
        try:
            yield report
        finally:
            report._bar = None


def _loss_text(loss: float) -> str:
    return f"{loss:.6g}" if math.isfinite(loss) else str(loss)
