"""The evaluation's figures: Wilson intervals, accuracy, per-class figures and the confusion
matrix with photos that got no answer, expected calibration error, accuracy against coverage,
and accuracy per group with the worst group named."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gclf.runtime.evaluation.coverage import at_coverage, at_threshold, coverage_curve, for_accuracy
from gclf.runtime.evaluation.group_metrics import accuracy_by_group
from gclf.runtime.evaluation.metrics import NO_ANSWER, Proportion, accuracy, confusion_matrix, per_class, wilson_interval
from gclf.runtime.evaluation.reliability import bin_index, reliability, reliability_per_answer


# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table II,
# method 3 (Wilson score, no continuity correction): published to four decimals.
@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_matches_newcombes_published_values(k: int, n: int, low: float, high: float) -> None:
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_is_symmetric_bounded_and_knows_nothing_of_zero_trials() -> None:
    for n in (1, 7, 40, 1200):
        for k in range(0, n + 1, max(1, n // 13)):
            low, high = wilson_interval(k, n)
            assert 0.0 <= low <= k / n <= high <= 1.0
            mirrored = wilson_interval(n - k, n)
            assert (low, high) == pytest.approx((1 - mirrored[1], 1 - mirrored[0]), abs=1e-12)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(6, 5)


def test_wilson_interval_covers_the_true_proportion_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    p, n, trials = 0.83, 50, 4000
    ks = rng.binomial(n, p, size=trials)
    covered = np.mean([wilson_interval(int(k), n)[0] <= p <= wilson_interval(int(k), n)[1] for k in ks])
    assert 0.93 <= covered <= 0.975  # Wilson's coverage oscillates a little around 95%


def test_no_answer_counts_as_wrong_for_accuracy_and_recall_but_not_against_precision() -> None:
    labels = [0, 0, 0, 1, 1, 1]
    predicted = [0, NO_ANSWER, 1, 1, 1, NO_ANSWER]
    acc = accuracy(labels, predicted)
    assert (acc.k, acc.n) == (3, 6)
    matrix = confusion_matrix(labels, predicted, 2)
    assert matrix.tolist() == [[1, 1, 1], [0, 2, 1]]  # last column: no answer
    first, second = per_class(labels, predicted, ("a", "b"))
    assert (first.recall.k, first.recall.n, first.precision.k, first.precision.n) == (1, 3, 1, 1)
    assert (second.recall.k, second.recall.n, second.precision.k, second.precision.n) == (2, 3, 2, 3)
    p, r = 2 / 3, 2 / 3
    assert second.f1 == pytest.approx(2 * p * r / (p + r))
    assert Proportion(0, 0).to_dict()["value"] is None


def test_confusion_matrix_refuses_indices_outside_the_classes() -> None:
    with pytest.raises(ValueError):
        confusion_matrix([0, 2], [0, 1], 2)


def _ece_by_hand(conf: np.ndarray, right: np.ndarray, n_bins: int) -> float:
    total = 0.0
    for i in range(n_bins):
        lo, hi = i / n_bins, (i + 1) / n_bins
        inside = (conf >= lo) & ((conf < hi) | ((i == n_bins - 1) & (conf <= hi)))
        if inside.any():
            total += inside.sum() * abs(right[inside].mean() - conf[inside].mean())
    return total / conf.size


def test_expected_calibration_error_is_the_weighted_gap_of_equal_width_bins() -> None:
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, size=500)
    conf[:5] = 1.0  # the last bin is closed
    right = rng.uniform(size=500) < conf**2  # over-confident
    rel = reliability(conf, right, 15)
    assert rel.ece == pytest.approx(_ece_by_hand(conf, right, 15))
    assert sum(b.n for b in rel.bins) == 500 and rel.bins[-1].n >= 5
    assert rel.overconfidence > 0
    assert all(b.n == 0 for b in rel.bins if b.high <= 0.5)


def test_a_calibrated_source_has_a_small_ece_and_a_miscalibrated_one_a_large_one() -> None:
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.5, 1.0, size=20000)
    calibrated = reliability(conf, rng.uniform(size=conf.size) < conf)
    shifted = reliability(conf, rng.uniform(size=conf.size) < conf - 0.1)
    assert calibrated.ece < 0.02
    assert shifted.ece == pytest.approx(0.1, abs=0.02)
    assert bin_index(np.array([0.0, 1 / 15, 0.9999, 1.0])).tolist() == [0, 1, 14, 14]


def test_reliability_per_answer_separates_the_classes_answers() -> None:
    # Answers "b" are right as often as they claim; answers "a" claim 0.9 and are right half the time.
    probs = np.array([[0.9, 0.1]] * 100 + [[0.2, 0.8]] * 100)
    labels = np.array([0] * 50 + [1] * 50 + [1] * 80 + [0] * 20)
    per = reliability_per_answer(probs, labels, ("a", "b"))
    assert per["a"].n == 100 and per["a"].ece == pytest.approx(0.4)
    assert per["b"].n == 100 and per["b"].ece == pytest.approx(0.0, abs=1e-12)


def test_coverage_curve_thresholds_answer_whole_ties() -> None:
    conf = np.array([0.9, 0.9, 0.8, 0.7, 0.6, 0.6, 0.55])
    right = np.array([1, 1, 0, 1, 1, 0, 0], dtype=bool)
    curve = coverage_curve(conf, right)
    assert [p.threshold for p in curve] == [0.9, 0.8, 0.7, 0.6, 0.55]
    assert [p.answered for p in curve] == [2, 3, 4, 6, 7]
    assert [p.accuracy.k for p in curve] == [2, 2, 3, 4, 4]
    for p in curve:  # each point is what its threshold gives
        direct = at_threshold(conf, right, p.threshold)
        assert (direct.answered, direct.accuracy.k) == (p.answered, p.accuracy.k)


def test_picking_a_threshold_for_a_coverage_or_an_accuracy() -> None:
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.5, 1.0, size=1000)
    right = rng.uniform(size=1000) < conf
    for target in (0.5, 0.8, 0.9, 1.0):
        point = at_coverage(conf, right, target)
        assert point is not None and point.coverage >= target
        # The next higher threshold would answer fewer than the target.
        higher = conf[conf > point.threshold]
        assert higher.size / conf.size < target
    best = for_accuracy(conf, right, 0.9)
    assert best is not None and best.accuracy.value >= 0.9
    assert all(p.accuracy.value < 0.9 for p in coverage_curve(conf, right) if p.answered > best.answered)
    assert for_accuracy(conf, np.zeros(1000, dtype=bool), 0.5) is None


def test_group_table_ranks_only_groups_large_enough_and_names_the_worst() -> None:
    groups = ["A"] * 40 + ["B"] * 50 + ["C"] * 10 + [None] * 5
    right = [True] * 36 + [False] * 4 + [True] * 40 + [False] * 10 + [False] * 10 + [True] * 5
    table = accuracy_by_group(groups, right, grouping="letters", order=("C", "B", "A"), min_n=30)
    assert [g.name for g in table.groups] == ["C", "B", "A"]
    assert [g.name for g in table.too_few] == ["C"]  # 0% but only 10 photos: not ranked
    assert table.worst.name == "B" and table.best.name == "A"
    assert table.gap == pytest.approx(36 / 40 - 40 / 50)
    assert table.ungrouped == 5
    sentence = table.sentence()
    assert "worst B 80.0% (40/50" in sentence and "A 90.0% (36/40" in sentence and "10.0 points" in sentence
    as_dict = table.to_dict()
    assert as_dict["worst"] == "B" and as_dict["too_few_to_rank"] == ["C"]


def test_group_table_with_fewer_than_two_ranked_groups_ranks_nothing() -> None:
    table = accuracy_by_group(["A"] * 30 + ["B"] * 3, [True] * 33, grouping="g", min_n=30)
    assert table.gap is None and "no group is ranked" in table.sentence()
    assert table.to_dict()["worst"] is None
    assert math.isnan(Proportion(0, 0).value)
