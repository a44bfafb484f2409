"""The quality gate: may a candidate replace the published model?

With ``c``, ``p`` and ``b`` the NDCG@k of the candidate, the currently published model and the
popularity baseline, all on the same holdout, the candidate is published when

* ``c > b``: it beats popularity (skipped when the candidate *is* the popularity model, which
  cannot beat itself), and
* ``c >= (1 - tolerance) * p``: it is not worse than what is served by more than the tolerance
  (skipped when nothing is published, or the published model could not be scored).

A candidate that cannot be scored (no held-out user) is rejected: an unmeasured model is never
published. Every check is recorded with its numbers, and the first failing one is the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GateDecision", "decide"]


@dataclass(frozen=True)
class GateDecision:
    """The verdict, its one-line reason, and every check with its numbers."""

    accepted: bool
    reason: str
    checks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "reason": self.reason, "checks": self.checks}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateDecision:
        return cls(bool(data["accepted"]), str(data["reason"]), list(data.get("checks", [])))


def decide(
    candidate: float,
    popular: float | None,
    published: float | None,
    *,
    tolerance: float,
    metric: str = "ndcg@10",
    candidate_is_popular: bool = False,
) -> GateDecision:
    """Apply the gate (module doc) to NDCG values; ``None`` means "not available"."""
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"gate tolerance must lie in [0, 1), got {tolerance}")
    checks: list[dict[str, Any]] = []
    failures: list[str] = []
    if not _finite(candidate):
        return GateDecision(False, f"the candidate has no {metric} (no held-out user to evaluate)", checks)
    if candidate_is_popular:
        checks.append({"check": "above_popularity", "skipped": "the candidate is the popularity model"})
    elif popular is None or not _finite(popular):
        checks.append({"check": "above_popularity", "skipped": "no popularity score"})
    else:
        passed = candidate > popular
        checks.append(
            {"check": "above_popularity", "passed": passed, "candidate": candidate, "popular": popular}
        )
        if not passed:
            failures.append(f"{metric} {candidate:.4f} is not above popularity's {popular:.4f}")
    if published is None or not _finite(published):
        checks.append({"check": "vs_published", "skipped": "no published model scored on this holdout"})
    else:
        floor = (1.0 - tolerance) * published
        passed = candidate >= floor
        checks.append(
            {
                "check": "vs_published",
                "passed": passed,
                "candidate": candidate,
                "published": published,
                "tolerance": tolerance,
                "floor": floor,
            }
        )
        if not passed:
            failures.append(
                f"{metric} {candidate:.4f} is below (1 - {tolerance:g}) x the published model's "
                f"{published:.4f} = {floor:.4f}"
            )
    if failures:
        return GateDecision(False, "; ".join(failures), checks)
    return GateDecision(True, f"{metric} {candidate:.4f} passes the gate", checks)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
