"""Search-space dimensions: how a hyperparameter may vary when a model is tuned.

A :class:`Range` is numeric (uniform or log-uniform, float or integer), a :class:`Choice`
categorical. Each draws its value from an Optuna trial (``suggest``), so the tuner never needs
to know which kind it holds. Plain frozen values: models declare their default spaces beside
them (:mod:`recforge.models.registry`) without importing Optuna.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import optuna

__all__ = ["Choice", "Dimension", "Range", "SearchSpace"]


@dataclass(frozen=True)
class Range:
    """A numeric dimension ``low .. high`` (both included), uniform or, with ``log=True``,
    log-uniform; ``integer=True`` draws integers."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"Range {name} must be a finite number, got {value!r}")
        if self.low > self.high:
            raise ValueError(f"Range low must be <= high, got {self.low} > {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale Range needs low > 0, got {self.low}")
        if self.integer and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"an integer Range needs integer bounds, got {self.low} .. {self.high}")

    def suggest(self, trial: optuna.Trial, name: str) -> int | float:
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)

    def clip(self, value: float) -> int | float:
        """``value`` moved into the range (rounded for an integer range)."""
        inside = min(max(float(value), self.low), self.high)
        return round(inside) if self.integer else inside

    def describe(self) -> str:
        kind = "integer" if self.integer else "float"
        return f"{kind} {self.low:g}..{self.high:g}{' log' if self.log else ''}"


@dataclass(frozen=True)
class Choice:
    """A categorical dimension: one of ``options`` (None, bool, int, float or str)."""

    options: tuple[Any, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))
        if not self.options:
            raise ValueError("Choice needs at least one option")
        for option in self.options:
            if option is not None and not isinstance(option, bool | int | float | str):
                raise ValueError(f"Choice options must be None, bool, int, float or str, got {option!r}")

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.options))

    def describe(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)


Dimension: TypeAlias = Range | Choice
SearchSpace: TypeAlias = Mapping[str, Dimension]
