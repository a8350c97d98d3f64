"""An honest "unsure": the model's recorded threshold (`gclf.decision`), the reserved label,
and the Classifier's answers below the threshold.

The tiny red/blue model follows the colour: pure red is "red" at about 0.98, PURPLE_RGB
"blue" at about 0.59, so a threshold between the two makes one answer unsure and not the other.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gclf.runtime import UNSURE
from gclf.runtime.classifier import Classifier
from gclf.runtime.errors import EXIT_BAD_MODEL, BadModelError, UsageError
from gclf.runtime.metadata import KEY_DECISION, Decision, ModelMetadata
from gclf.runtime.preprocess import PreprocessSpec
from gclf.runtime.threshold import resolve_threshold
from gclf_testutil import PURPLE_RGB, decision_record

RED_RGB = (255, 0, 0)


def _solid(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.full((32, 32, 3), rgb, dtype=np.uint8)


def _meta(**kw) -> ModelMetadata:
    if isinstance(kw.get("decision"), dict):
        kw["decision"] = Decision.from_dict(kw["decision"])
    return ModelMetadata(spec=PreprocessSpec(), class_names=kw.pop("class_names", ("man", "woman")), **kw)


# --- the record ---------------------------------------------------------------------------------


def test_the_decision_round_trips_and_gives_its_threshold() -> None:
    meta = _meta(decision=decision_record(0.62))
    back = ModelMetadata.from_props(meta.to_props())
    assert json.loads(meta.to_props()[KEY_DECISION])["min_confidence"] == 0.62
    assert back.decision == meta.decision
    assert back.min_confidence == 0.62
    assert _meta().min_confidence is None  # no record: no threshold


@pytest.mark.parametrize(
    "decision, words",
    [
        ({"chosen_on": "validation"}, "is missing min_confidence"),
        (decision_record(1.5), "min_confidence must be a number from 0 to 1"),
        (decision_record("0.6"), "min_confidence must be a number from 0 to 1"),
        (decision_record(True), "min_confidence must be a number from 0 to 1"),
        (decision_record(10**400), "min_confidence must be a number from 0 to 1"),
        (decision_record(float("nan")), "min_confidence must be a number from 0 to 1"),
        (decision_record(0.6, coverage=-0.1), "coverage must be a number from 0 to 1"),
        (decision_record(0.6, photos=12.5), "photos must be a whole number"),
        (decision_record(0.6, chosen_on=3), "chosen_on must be a string"),
    ],
)
def test_a_malformed_decision_is_a_bad_model(tiny_onnx, decision: dict, words: str) -> None:
    model = tiny_onnx(props_update={KEY_DECISION: json.dumps(decision)})
    with pytest.raises(BadModelError, match=words) as err:
        Classifier(model)
    assert err.value.exit_code == EXIT_BAD_MODEL


def test_a_decision_that_is_not_a_json_object_is_a_bad_model(tiny_onnx) -> None:
    with pytest.raises(BadModelError, match="gclf.decision must be a JSON dict"):
        Classifier(tiny_onnx(props_update={KEY_DECISION: "[0.6]"}))


@pytest.mark.parametrize("name", ["unsure", "Unsure", "UNSURE"])
def test_a_model_with_a_class_called_unsure_is_a_bad_model(tiny_onnx, name: str) -> None:
    model = tiny_onnx(props_update={"gclf.class_names": json.dumps(["red", name])})
    with pytest.raises(BadModelError, match="must not include 'unsure'") as err:
        Classifier(model)
    assert err.value.exit_code == EXIT_BAD_MODEL


# --- which threshold applies --------------------------------------------------------------------


def test_the_threshold_is_the_given_one_else_the_models_else_none() -> None:
    recorded = _meta(decision=decision_record(0.62))
    assert resolve_threshold(None, recorded).min_confidence == 0.62
    assert resolve_threshold(None, recorded).origin == "model"
    assert resolve_threshold(0.8, recorded).min_confidence == 0.8
    assert not resolve_threshold(0, recorded).active  # 0 turns the model's off
    assert resolve_threshold(None, _meta()).origin == "none" and not resolve_threshold(None, _meta()).active


def test_each_origin_says_where_the_threshold_came_from() -> None:
    recorded = _meta(decision=decision_record(0.62))
    model_line = resolve_threshold(None, recorded).describe("--min-confidence")
    assert "below confidence 0.62 are unsure" in model_line and "recorded decision" in model_line
    assert "chosen on validation" in model_line and "--min-confidence 0 turns it off" in model_line
    assert "(--min-confidence 0.8)" in resolve_threshold(0.8, recorded).describe("--min-confidence")
    assert "none is unsure (--min-confidence 0)" in resolve_threshold(0, recorded).describe("--min-confidence")
    assert "records no confidence threshold" in resolve_threshold(None, _meta()).describe("--min-confidence")
    none_needed = resolve_threshold(None, _meta(decision=decision_record(0.0))).describe("--min-confidence")
    assert none_needed.startswith("every answer is given: the model's recorded decision needs no threshold") and "below confidence 0 " not in none_needed


@pytest.mark.parametrize("value", [-0.1, 1.01, float("nan")])
def test_a_threshold_outside_0_to_1_is_a_usage_error(tiny_onnx, value: float) -> None:
    with pytest.raises(UsageError, match="from 0 to 1"):
        Classifier(tiny_onnx(), min_confidence=value)


# --- the answers --------------------------------------------------------------------------------


def test_an_answer_below_the_models_threshold_is_unsure_and_keeps_its_best_class(tiny_onnx) -> None:
    clf = Classifier(tiny_onnx(decision=decision_record(0.7)))
    sure, unsure = clf.predict_batch([_solid(RED_RGB), _solid(PURPLE_RGB)])

    assert (sure.label, sure.best, sure.unsure) == ("red", "red", False)
    assert (unsure.label, unsure.best, unsure.unsure) == (UNSURE, "blue", True)
    assert 0.5 < unsure.confidence < 0.7
    assert unsure.confidence == unsure.probabilities["blue"]  # the best class's probability
    assert clf.labels == ("red", "blue", UNSURE)


def test_min_confidence_0_answers_always_and_a_model_without_a_decision_too(tiny_onnx) -> None:
    off = Classifier(tiny_onnx("a.onnx", decision=decision_record(0.7)), min_confidence=0)
    plain = Classifier(tiny_onnx("b.onnx"))
    for clf in (off, plain):
        pred = clf.predict(_solid(PURPLE_RGB))
        assert (pred.label, pred.best) == ("blue", "blue")
        assert clf.labels == ("red", "blue")  # no "unsure" to count


def test_the_given_threshold_wins_over_the_models(tiny_onnx) -> None:
    model = tiny_onnx(decision=decision_record(0.7))
    assert Classifier(model, min_confidence=0.99).predict(_solid(RED_RGB)).label == UNSURE
    assert Classifier(model, min_confidence=0.5).predict(_solid(PURPLE_RGB)).label == "blue"
    assert Classifier(model, min_confidence=0.5).threshold.origin == "given"


def test_files_and_faces_get_unsure_too(tiny_onnx, tmp_path, write_image) -> None:
    from gclf.runtime.classifier import FaceResult

    clf = Classifier(tiny_onnx(decision=decision_record(0.7)))
    path = write_image(tmp_path / "purple.png", _solid(PURPLE_RGB)[..., ::-1])
    (result,) = clf.predict_files([path])
    assert (result.prediction.label, result.prediction.best) == (UNSURE, "blue")
    face = FaceResult.of((1, 2, 3, 4), result.prediction)
    assert (face.label, face.best, face.unsure) == (UNSURE, "blue", True)
