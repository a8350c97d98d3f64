"""The default decision threshold: the lowest one whose answers reach 95% right, but never one
that leaves fewer than 85% of the photos answered."""

from __future__ import annotations

import numpy as np
import pytest

from gclf.runtime.evaluation.coverage import at_threshold
from gclf.runtime.evaluation.decision import MIN_COVERAGE, TARGET_ACCURACY, choose_decision


def _answers(n_right_high: int, n_wrong_high: int, n_right_low: int, n_wrong_low: int) -> tuple[np.ndarray, np.ndarray]:
    """Confident answers (0.9-0.99) and unsure ones (0.5-0.6), each group spread evenly, with
    the wrong ones at the bottom of their group."""
    conf, correct = [], []
    for right, wrong, (lo, hi) in ((n_right_high, n_wrong_high, (0.9, 0.99)), (n_right_low, n_wrong_low, (0.5, 0.6))):
        values = np.linspace(hi, lo, right + wrong)
        conf += list(values)
        correct += [True] * right + [False] * wrong
    return np.array(conf), np.array(correct)


def test_every_answer_right_enough_means_never_unsure() -> None:
    conf, correct = _answers(96, 0, 3, 1)  # 99 of 100 right
    decision = choose_decision(conf, correct, chosen_on="test")
    assert decision.min_confidence == 0.0 and decision.coverage == 1.0 and decision.accuracy == pytest.approx(0.99)


def test_the_lowest_threshold_reaching_the_target_accuracy() -> None:
    conf, correct = _answers(88, 0, 2, 10)  # the confident 88 are all right; the rest mostly wrong
    decision = choose_decision(conf, correct, chosen_on="test")
    answered = at_threshold(conf, correct, decision.min_confidence)
    assert answered.accuracy.value >= TARGET_ACCURACY and answered.coverage >= MIN_COVERAGE
    lower = conf[conf < decision.min_confidence].max()
    assert at_threshold(conf, correct, lower).accuracy.value < TARGET_ACCURACY  # the next lower threshold misses it
    assert (decision.coverage, decision.accuracy, decision.photos) == (answered.coverage, answered.accuracy.value, 100)
    assert decision.target_accuracy == TARGET_ACCURACY and "85%" in decision.rule


def test_never_fewer_than_85_percent_answered() -> None:
    conf, correct = _answers(50, 0, 20, 30)  # 95% right only among the 50 most confident
    decision = choose_decision(conf, correct, chosen_on="test")
    answered = at_threshold(conf, correct, decision.min_confidence)
    assert answered.coverage == pytest.approx(MIN_COVERAGE) and decision.coverage == pytest.approx(MIN_COVERAGE)
    assert decision.accuracy < TARGET_ACCURACY
    assert at_threshold(conf, correct, np.nextafter(decision.min_confidence, 1)).coverage < MIN_COVERAGE  # the highest that keeps 85%
