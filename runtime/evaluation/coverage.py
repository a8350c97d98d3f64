"""Accuracy against coverage: answer only when the confidence reaches a threshold, and see
how often the answers given are right and how many are given (selective classification,
a "risk-coverage" curve read the other way up).

A threshold t answers every photo whose top-class confidence is >= t; coverage is the share
answered, accuracy is of the answered ones. Thresholds are the distinct confidences seen, so
every point of the curve is one a user can set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from gclf.runtime.evaluation.metrics import Proportion

# Coverages whose accuracy reports list ("answering the 90% most confident gives ...").
REPORTED_COVERAGES = (1.0, 0.95, 0.90, 0.85, 0.80, 0.70, 0.60, 0.50)
# Accuracies whose lowest threshold reports list ("to be right 95% of the time, answer at ...").
# Read off the set they are measured on, these describe it; a default threshold for a model
# is to be chosen on one part of a set and checked on another.
REPORTED_ACCURACIES = (0.90, 0.95, 0.99)


@dataclass(frozen=True)
class CoveragePoint:
    threshold: float  # answered: confidence >= threshold
    answered: int
    total: int
    accuracy: Proportion  # right answers among the answered ones

    @property
    def coverage(self) -> float:
        return self.answered / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "coverage": self.coverage, "answered": self.answered, "total": self.total, "accuracy": self.accuracy.to_dict()}


def _arrays(confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(correct, dtype=bool)
    if conf.shape != right.shape or conf.ndim != 1:
        raise ValueError(f"confidence and correct must be 1-D and of one length, got {conf.shape} and {right.shape}")
    return conf, right


def coverage_curve(confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray) -> list[CoveragePoint]:
    """One point per distinct confidence, from the most confident (lowest coverage) down to
    the least (every answer given)."""
    conf, right = _arrays(confidence, correct)
    order = np.argsort(-conf, kind="stable")
    conf, right = conf[order], right[order]
    n_right = np.cumsum(right)
    # The last position of each run of equal confidences: a threshold answers all of a tie.
    ends = np.flatnonzero(np.append(conf[1:] != conf[:-1], True))
    return [CoveragePoint(float(conf[i]), int(i + 1), int(conf.size), Proportion(int(n_right[i]), int(i + 1))) for i in ends]


def at_threshold(confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, threshold: float) -> CoveragePoint:
    """What answering only at confidence >= `threshold` gives (gclf-eval --min-confidence)."""
    conf, right = _arrays(confidence, correct)
    answered = conf >= threshold
    return CoveragePoint(float(threshold), int(answered.sum()), int(conf.size), Proportion(int(right[answered].sum()), int(answered.sum())))


def at_coverage(confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, target: float) -> CoveragePoint | None:
    """The highest threshold that still answers at least `target` of the photos (so the
    coverage is the smallest one >= target); None when there are no answers."""
    if not 0 < target <= 1:
        raise ValueError(f"target coverage must be in (0, 1], got {target}")
    curve = coverage_curve(confidence, correct)
    return next((p for p in curve if p.coverage >= target - 1e-12), None)


def for_accuracy(confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, target: float) -> CoveragePoint | None:
    """The lowest threshold (the most answers) whose answers are right at least `target` of
    the time; None if no threshold reaches it. Accuracy need not fall steadily as coverage
    grows, so this is the largest coverage that reaches the target, not the first crossing."""
    curve = coverage_curve(confidence, correct)
    reaching = [p for p in curve if p.accuracy.value >= target]
    return reaching[-1] if reaching else None
