"""Calibration: a temperature and per-class scale and bias fitted by NLL recover the ones that
made the data; applying them; the record a model file carries; and the seeded,
class-stratified split that keeps fitting and reporting apart."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gclf.runtime.errors import BadModelError
from gclf.runtime.evaluation.calibration import (
    METHODS,
    Calibration,
    CalibrationError,
    apply_temperature,
    fit_calibration,
    fit_equal_recall,
    fit_temperature,
    fit_vector_scaling,
    log_probabilities,
    nll,
    recalls,
    softmax,
    split_fit_report,
)
from gclf.runtime.evaluation.reliability import expected_calibration_error


def _calibrated_sample(rng: np.random.Generator, n: int, c: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): a perfectly calibrated source."""
    logits = rng.normal(0, 2.5, size=(n, c))
    probs = softmax(logits)
    labels = np.array([rng.choice(c, p=p) for p in probs])
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_temperature_that_made_the_data(true_t: float) -> None:
    rng = np.random.default_rng(0)
    logits, labels = _calibrated_sample(rng, 6000)
    # A model whose logits are the calibrated ones times 1/T is miscalibrated by exactly T.
    fitted = fit_temperature(logits / true_t, labels)
    assert fitted == pytest.approx(1 / true_t, rel=0.08)


def test_fitted_temperature_is_the_nll_minimum() -> None:
    rng = np.random.default_rng(1)
    logits, labels = _calibrated_sample(rng, 2000)
    t = fit_temperature(3 * logits, labels)
    best = nll(3 * logits / t, labels)
    for nearby in (t * 0.97, t * 1.03):
        assert nll(3 * logits / nearby, labels) > best


def test_temperature_never_changes_an_answer_and_lowers_the_ece_on_new_data() -> None:
    rng = np.random.default_rng(2)
    logits, labels = _calibrated_sample(rng, 8000)
    over = 3 * logits  # over-confident
    fit, rest = slice(0, 4000), slice(4000, None)
    cal = fit_calibration("temperature", over[fit], labels[fit], fitted_on={"description": "first half"})
    after = cal.apply(over[rest])
    assert (after.argmax(axis=1) == over[rest].argmax(axis=1)).all()
    before_ece = expected_calibration_error(softmax(over[rest]), labels[rest])
    after_ece = expected_calibration_error(after, labels[rest])
    assert before_ece > 0.1 and after_ece < 0.03
    assert cal.fit_figures["ece_after"] < cal.fit_figures["ece_before"]
    assert cal.fit_figures["nll_after"] < cal.fit_figures["nll_before"]
    assert cal.fitted_on == {"description": "first half", "n": 4000}


def test_log_probabilities_serve_as_logits() -> None:
    rng = np.random.default_rng(3)
    logits, labels = _calibrated_sample(rng, 1000)
    from_logits = fit_temperature(2 * logits, labels)
    from_log_probs = fit_temperature(log_probabilities(softmax(2 * logits)), labels)
    assert from_log_probs == pytest.approx(from_logits, rel=1e-5)
    assert apply_temperature(log_probabilities(softmax(logits)), 1.7) == pytest.approx(apply_temperature(logits, 1.7))
    assert np.isfinite(log_probabilities(np.array([[1.0, 0.0]]))).all()


def test_vector_scaling_recovers_a_shifted_decision_threshold() -> None:
    # A two-class source whose second class is under-called: its logit is 1.5 too low.
    rng = np.random.default_rng(4)
    logits, labels = _calibrated_sample(rng, 8000, c=2)
    shifted = logits - np.array([0.0, 1.5])
    scale, bias = fit_vector_scaling(shifted, labels)
    assert scale == pytest.approx([1.0, 1.0], abs=0.1)
    assert bias[1] - bias[0] == pytest.approx(1.5, abs=0.15)  # only the difference matters to softmax
    # No temperature can undo a shift: vector scaling fits better on the data it was fitted on.
    t = fit_temperature(shifted, labels)
    assert nll(shifted * scale + bias, labels) < nll(shifted / t, labels) - 0.01


def test_equal_recall_closes_a_gap_between_classes_on_photos_it_was_not_fitted_on() -> None:
    # The second class is under-called by 1.2 logits: far fewer of its photos are recognised.
    rng = np.random.default_rng(7)
    logits, labels = _calibrated_sample(rng, 6000, c=2)
    shifted = logits - np.array([0.0, 1.2])
    fit, held_out = slice(0, 3000), slice(3000, None)
    before = recalls(shifted[held_out], labels[held_out], 2)
    assert before[0] - before[1] > 0.15

    t, bias = fit_equal_recall(shifted[fit], labels[fit])
    after = recalls(shifted[held_out] / t + bias, labels[held_out], 2)

    assert abs(after[0] - after[1]) < 0.03 and bias[1] > bias[0] and bias.sum() == pytest.approx(0.0)
    assert t == pytest.approx(fit_temperature(shifted[fit], labels[fit]))
    cal = fit_calibration("equal_recall", shifted[fit], labels[fit], fitted_on={})
    assert np.argmax(cal.apply(shifted[held_out]), axis=1).tolist() == np.argmax(shifted[held_out] / t + bias, axis=1).tolist()
    assert cal.describe().startswith("equal recall (temperature")


def test_equal_recall_leaves_balanced_classes_as_they_are() -> None:
    rng = np.random.default_rng(8)
    logits, labels = _calibrated_sample(rng, 4000, c=3)
    t, bias = fit_equal_recall(logits, labels)
    r = recalls(logits / t + bias, labels, 3)
    assert np.nanmax(r) - np.nanmin(r) <= np.nanmax(recalls(logits, labels, 3)) - np.nanmin(recalls(logits, labels, 3))
    assert np.abs(bias).max() < 0.5


def test_fit_calibration_records_both_methods_and_refuses_unusable_data() -> None:
    rng = np.random.default_rng(5)
    logits, labels = _calibrated_sample(rng, 500)
    for method in METHODS:
        cal = fit_calibration(method, logits, labels, fitted_on={"seed": 3})
        again = Calibration.from_json(cal.to_json())
        assert again == cal
        assert again.apply(logits) == pytest.approx(cal.apply(logits))
        assert json.loads(cal.to_json())["method"] == method
    with pytest.raises(CalibrationError, match="one class"):
        fit_temperature(logits, np.zeros(500, dtype=int))
    with pytest.raises(CalibrationError, match="no answered photos"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int))


@pytest.mark.parametrize(
    "record",
    [
        {"method": "temperature", "parameters": {"temperature": 0}},
        {"method": "temperature", "parameters": {"temperature": "1.2"}},
        {"method": "vector_scaling", "parameters": {"scale": [1.0, 1.0], "bias": [0.0]}},
        {"method": "platt", "parameters": {}},
        {"method": "equal_recall", "parameters": {"temperature": 1.0}},
        {"method": "equal_recall", "parameters": {"temperature": 1.0, "bias": [0.0, float("inf")]}},
        {"method": "temperature"},
    ],
)
def test_a_bad_calibration_record_is_a_bad_model(record: dict) -> None:
    with pytest.raises(BadModelError, match="gclf.calibration"):
        Calibration.from_dict(record)


def test_vector_scaling_refuses_a_model_with_other_classes() -> None:
    cal = Calibration("vector_scaling", {"scale": [1.0, 1.0], "bias": [0.0, 0.0]})
    with pytest.raises(BadModelError, match="2 classes"):
        cal.apply(np.zeros((1, 3)))


def test_split_is_seeded_stratified_and_disjoint() -> None:
    labels = np.array([0] * 101 + [1] * 40 + [2] * 9)
    fit, report = split_fit_report(labels, fit_share=0.5, seed=7)
    assert np.intersect1d(fit, report).size == 0
    assert np.union1d(fit, report).tolist() == list(range(labels.size))
    for c, n in ((0, 101), (1, 40), (2, 9)):
        assert abs(np.sum(labels[fit] == c) - n / 2) <= 0.5  # each class split alike
    again, _ = split_fit_report(labels, fit_share=0.5, seed=7)
    other, _ = split_fit_report(labels, fit_share=0.5, seed=8)
    assert again.tolist() == fit.tolist() and other.tolist() != fit.tolist()
    small, _ = split_fit_report(labels, fit_share=0.2, seed=7)
    assert small.size == round(0.2 * 101) + round(0.2 * 40) + round(0.2 * 9)
    with pytest.raises(ValueError):
        split_fit_report(labels, fit_share=1.0)
