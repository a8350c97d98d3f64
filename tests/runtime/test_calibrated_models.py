"""A model that records a calibration answers with it, everywhere: predict, predict_files,
the faces path, the live loop's predict_input, an int8 file and every engine; vector scaling
can change an answer; `calibrated=False` gives the raw softmax; a malformed record is a bad
model (exit 6); and the metadata format version says whether a file needs a runtime that
applies calibrations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gclf.runtime.calibration import KEY_CALIBRATION, Calibration, softmax
from gclf.runtime.classifier import Classifier
from gclf.runtime.cli.infer import main as infer_main
from gclf.runtime.errors import EXIT_BAD_MODEL, BadModelError
from gclf.runtime.metadata import FORMAT_VERSION, KEY_DECISION, KEY_FORMAT, Decision, ModelMetadata
from gclf.runtime.onnx_metadata import update_metadata
from gclf.runtime.preprocess import PreprocessSpec, preprocess_batch
from gclf_testutil import FACES_MODEL, SquareDetector, solid_bgr, write_image_file

import importlib.util

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason='OpenVINO is not installed (pip install ".[openvino]")')
ENGINES = ["onnxruntime", pytest.param("openvino", marks=[needs_openvino, pytest.mark.own_process])]
TEMPERATURE = 2.5
RED_RGB = (230, 30, 20)


def _record(path: Path, calibration: dict | str, version: str = "2") -> Path:
    text = calibration if isinstance(calibration, str) else json.dumps(calibration)
    update_metadata(path, {KEY_CALIBRATION: text, KEY_FORMAT: version})
    return path


def _temperature(t: float = TEMPERATURE) -> dict:
    return {"method": "temperature", "parameters": {"temperature": t}, "fitted_on": {"description": "a test"}}


def _red_image() -> np.ndarray:
    image = np.zeros((24, 24, 3), np.uint8)
    image[:] = RED_RGB
    image[:, :8, 2] = 200  # some blue, so the model is not sure to rounding
    return image


def _expected(clf: Classifier, rgb: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) computed here from the engine's raw logits."""
    return softmax(clf.logits(preprocess_batch([rgb], clf.spec)) / temperature)[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_predict_and_predict_files_answer_with_the_recorded_temperature(engine: str, tiny_onnx, tmp_path: Path) -> None:
    model = _record(tiny_onnx(), _temperature())
    clf = Classifier(model, engine=engine)
    rgb = _red_image()
    expected = _expected(clf, rgb, TEMPERATURE)
    raw = softmax(clf.logits(preprocess_batch([rgb], clf.spec)))[0]
    assert abs(expected[0] - raw[0]) > 0.05  # else the test could not tell calibrated from raw

    got = clf.predict(rgb)
    np.testing.assert_allclose([got.probabilities[c] for c in clf.class_names], expected, atol=1e-9)
    assert got.label == "red" and got.confidence == pytest.approx(expected.max())
    path = write_image_file(tmp_path / "red.png", np.ascontiguousarray(rgb[..., ::-1]))
    (result,) = Classifier(model, engine=engine).predict_files([path])
    assert result.prediction.confidence == pytest.approx(expected.max(), abs=1e-6)  # PNG is lossless
    uncalibrated = Classifier(model, engine=engine, calibrated=False)
    assert uncalibrated.calibration is None and uncalibrated.predict(rgb).confidence == pytest.approx(raw.max())


def test_the_faces_path_answers_calibrated(tiny_onnx, tmp_path: Path) -> None:
    model = _record(tiny_onnx(props_update=FACES_MODEL), _temperature())
    clf = Classifier(model)
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[10:30, 40:60] = RED_RGB
    frame[10:30, 40:46, 2] = 200
    crop = frame[10:30, 40:60]

    (face,) = clf.predict_faces(frame, detector=SquareDetector(), margin=0.0)
    expected = _expected(clf, crop, TEMPERATURE)
    assert face.label == "red" and face.confidence == pytest.approx(expected.max(), abs=1e-6)
    path = write_image_file(tmp_path / "photo.png", np.ascontiguousarray(frame[..., ::-1]))
    (result,) = clf.predict_files([path], faces=True, detector=SquareDetector(), margin=0.0)
    assert result.faces[0].confidence == pytest.approx(expected.max(), abs=1e-6)


def test_an_int8_file_answers_with_its_own_recorded_temperature(tiny_onnx, tmp_path: Path) -> None:
    pytest.importorskip("sympy", reason="onnxruntime's quantizer needs sympy, which the training install brings (torch)")
    from gclf.export.quantize import QuantizeOptions, quantize_int8

    fp32 = tiny_onnx()
    spec = Classifier(fp32).spec
    photos = [write_image_file(tmp_path / f"c{i}.png", solid_bgr((40 * i, 250 - 40 * i, 90), 32, 32)) for i in range(6)]
    int8 = tmp_path / "tiny.int8.onnx"
    quantize_int8(fp32, int8, photos, spec, "input", QuantizeOptions())
    meta = Classifier(fp32).metadata
    props = ModelMetadata(spec=meta.spec, class_names=meta.class_names, variant="int8", training=meta.training,
                          quantization={"method": "MinMax"}, calibration=Calibration.from_dict(_temperature(1.7))).to_props()
    update_metadata(int8, props)

    clf = Classifier(int8)
    rgb = _red_image()
    assert clf.metadata.variant == "int8" and clf.calibration.parameters["temperature"] == 1.7
    expected, raw = _expected(clf, rgb, 1.7).max(), _expected(clf, rgb, 1.0).max()
    assert abs(expected - raw) > 0.05 and clf.predict(rgb).confidence == pytest.approx(expected, abs=1e-6)


def test_vector_scaling_can_change_an_answer(tiny_onnx) -> None:
    model = tiny_onnx()
    rgb = _red_image()
    assert Classifier(model).predict(rgb).label == "red"
    _record(model, {"method": "vector_scaling", "parameters": {"scale": [1.0, 1.0], "bias": [0.0, 6.0]}})
    clf = Classifier(model)
    assert clf.predict(rgb).label == "blue"
    assert clf.predict_input(preprocess_batch([rgb], clf.spec))[0].label == "blue"  # the live loop's path
    assert Classifier(model, calibrated=False).predict(rgb).label == "red"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("{not json", "gclf.calibration is not valid JSON"),
        ('["temperature", 2]', "gclf.calibration must be a JSON dict"),
        (_temperature(-1.0), "temperature must be a number from 0.01 to 100"),
        (_temperature(1e-300), "temperature must be a number"),
        ({"method": "platt", "parameters": {}}, "method must be one of"),
        ({"method": "vector_scaling", "parameters": {"scale": [1.0, 1.0, 1.0], "bias": [0.0, 0.0, 0.0]}}, "scales 3 classes and the model has 2"),
        ({"method": "vector_scaling", "parameters": {"scale": [1e300, 1.0], "bias": [0.0, 0.0]}}, "finite numbers"),
        ({"method": "temperature", "parameters": {"temperature": 2}, "fitted_on": [1]}, "fitted_on must be a JSON object"),
    ],
    ids=["json", "not-object", "negative", "tiny", "method", "classes", "huge-scale", "fitted-on"],
)
def test_a_malformed_calibration_is_a_bad_model_exit_6(tiny_onnx, tmp_path: Path, record, message: str) -> None:
    model = _record(tiny_onnx(), record)
    with pytest.raises(BadModelError, match=message):
        Classifier(model)
    image = write_image_file(tmp_path / "red.png", solid_bgr((0, 0, 255)))
    result = CliRunner().invoke(infer_main, [str(model), str(image)])
    assert result.exit_code == EXIT_BAD_MODEL and message.split(" ")[0] in result.stderr
    assert "Traceback" not in result.output and result.stderr.count("\n") == 1


def test_metadata_with_a_calibration_is_format_2_and_round_trips() -> None:
    spec = PreprocessSpec(input_height=32, input_width=32)
    cal = Calibration.from_dict(_temperature())
    decision = Decision(min_confidence=0.7, chosen_on="a test", target_accuracy=0.95, coverage=0.9, accuracy=0.96, photos=50, rule="a rule")
    plain = ModelMetadata(spec=spec, class_names=("a", "b"))
    calibrated = ModelMetadata(spec=spec, class_names=("a", "b"), calibration=cal, decision=decision)

    assert plain.to_props()[KEY_FORMAT] == "1" and calibrated.to_props()[KEY_FORMAT] == FORMAT_VERSION == "2"
    assert ModelMetadata.from_props(calibrated.to_props()) == calibrated
    assert calibrated.min_confidence == 0.7 and plain.min_confidence is None
    assert json.loads(calibrated.to_props()[KEY_DECISION])["min_confidence"] == 0.7


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("3", r"was written by a newer gclf \(metadata format version 3; this gclf reads versions 1 to 2\): upgrade gclf"),
        ("12", "was written by a newer gclf"),
        ("two", "version 'two' is not supported"),
        ("0", "version '0' is not supported"),
    ],
)
def test_a_newer_or_unknown_format_version_is_refused_in_one_sentence(tiny_onnx, version: str, message: str) -> None:
    model = tiny_onnx(props_update={KEY_FORMAT: version})
    with pytest.raises(BadModelError, match=message):
        Classifier(model)


def test_version_1_files_still_load_and_one_with_a_calibration_applies_it(tiny_onnx) -> None:
    """A version 1 file is every model exported before calibrations; one that records a
    calibration was written by an earlier gclf-eval --calibrate, and is applied as recorded."""
    model = tiny_onnx()
    rgb = _red_image()
    plain = Classifier(model)
    assert plain.calibration is None and plain.predict(rgb).confidence == pytest.approx(_expected(plain, rgb, 1.0).max())
    _record(model, _temperature(), version="1")
    clf = Classifier(model)
    assert clf.predict(rgb).confidence == pytest.approx(_expected(clf, rgb, TEMPERATURE).max())


def test_a_malformed_decision_is_a_bad_model(tiny_onnx) -> None:
    good = {"min_confidence": 0.6, "chosen_on": "x", "target_accuracy": 0.95, "coverage": 0.9, "accuracy": 0.95, "photos": 10}
    assert Classifier(tiny_onnx("ok.onnx", props_update={KEY_DECISION: json.dumps(good)})).metadata.min_confidence == 0.6
    for bad, message in (({**good, "min_confidence": 1.5}, "min_confidence"), ({"min_confidence": 0.5}, "missing"), ({**good, "photos": -1}, "photos")):
        with pytest.raises(BadModelError, match=f"gclf.decision.*{message}"):
            Classifier(tiny_onnx("bad.onnx", props_update={KEY_DECISION: json.dumps(bad)}))


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_parity_compares_raw_logits_with_the_raw_references(engine: str, tiny_onnx, tmp_path: Path, monkeypatch) -> None:
    """The recorded reference outputs are logits, uncalibrated; each engine's check compares
    its own raw logits with them, and the calibration is applied after: a strong temperature
    changes every probability and still passes."""
    from gclf.runtime.parity import record_references

    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "home"))
    model = tiny_onnx()
    record_references(model)
    _record(model, _temperature(40.0))
    clf = Classifier(model, engine=engine)
    assert clf.parity.passed and clf.parity.against == "recorded" and clf.parity.max_prob_diff < 1e-3
    rgb = _red_image()
    assert clf.predict(rgb).confidence == pytest.approx(_expected(clf, rgb, 40.0).max(), abs=1e-5)
