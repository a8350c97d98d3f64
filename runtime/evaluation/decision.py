"""Choosing a model's default decision threshold (`gclf.decision`): below it an answer is
"unsure". Chosen on labelled photos the model was not trained on (gclf-export: the run's
validation split; gclf-eval --calibrate: its fit part), from the accuracy-coverage curve of
the probabilities the runtime answers with (calibrated where the model records a calibration).

The rule: the lowest threshold whose answers are right at least TARGET_ACCURACY of the time,
but never one that leaves fewer than MIN_COVERAGE of the photos answered; where reaching the
target would, the highest threshold that still answers MIN_COVERAGE of them instead. Where
every answer together already reaches the target, the threshold is 0 (never unsure).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from gclf.runtime.evaluation.coverage import at_coverage, for_accuracy
from gclf.runtime.metadata import Decision

TARGET_ACCURACY = 0.95
MIN_COVERAGE = 0.85


def rule_text(target_accuracy: float = TARGET_ACCURACY, min_coverage: float = MIN_COVERAGE) -> str:
    """The rule in words, as the record carries it."""
    return (
        f"the lowest threshold whose answers are right at least {target_accuracy:.0%} of the time, "
        f"but never one that leaves fewer than {min_coverage:.0%} of the photos answered "
        f"(then the highest threshold that still answers {min_coverage:.0%})"
    )


def choose_decision(
    confidence: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    *,
    chosen_on: str,
    target_accuracy: float = TARGET_ACCURACY,
    min_coverage: float = MIN_COVERAGE,
) -> Decision:
    """The default threshold for answers with these top-class `confidence`s, `correct` or
    not (every photo answered: leave out those without an answer first), by the rule above."""
    conf = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(correct, dtype=bool)
    if conf.size == 0:
        raise ValueError("a decision threshold needs answered photos")
    point = for_accuracy(conf, right, target_accuracy)
    if point is None or point.coverage < min_coverage - 1e-12:
        point = at_coverage(conf, right, min_coverage)
        assert point is not None  # there are answers
        threshold = point.threshold
    else:  # reaching the target: as low as the curve allows, 0 where every answer reaches it
        threshold = 0.0 if point.answered == point.total else point.threshold
    return Decision(
        min_confidence=float(threshold),
        chosen_on=chosen_on,
        target_accuracy=float(target_accuracy),
        coverage=float(point.coverage),
        accuracy=float(point.accuracy.value),
        photos=int(conf.size),
        rule=rule_text(target_accuracy, min_coverage),
    )
