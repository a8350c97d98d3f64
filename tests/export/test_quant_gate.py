"""The int8 parity gate: int8 is written only when it agrees with fp32 (>= 99% top-1, accuracy
drop <= 0.5 points), after trying the usual remedies; `--force` writes the best attempt."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gclf.export.pipeline import RunFiles, export_int8, gate_failures, load_batch, measure_parity, remedies
from gclf.export.quantize import QuantizeOptions
from gclf.runtime.classifier import Classifier
from gclf.runtime.errors import QualityGateError


def _parity(agreement: float, acc32: float, acc8: float) -> dict:
    return {"top1_agreement": agreement, "fp32_accuracy": acc32, "int8_accuracy": acc8}


def test_gate_thresholds() -> None:
    assert gate_failures(_parity(1.0, 0.9, 0.9)) == []
    assert gate_failures(_parity(0.99, 0.9, 0.895)) == []  # exactly at both limits
    assert "agreement" in gate_failures(_parity(0.98, 0.9, 0.9))[0]
    assert "accuracy drop" in gate_failures(_parity(1.0, 0.9, 0.894))[0]


def test_measure_parity_values() -> None:
    p32 = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    p8 = np.array([[0.8, 0.2], [0.4, 0.6], [0.25, 0.75]])
    parity = measure_parity(p32, p8, np.array([0, 0, 1]))
    assert parity["top1_agreement"] == pytest.approx(2 / 3)
    assert parity["fp32_accuracy"] == 1.0 and parity["int8_accuracy"] == pytest.approx(2 / 3)
    assert parity["max_abs_top_prob_diff"] == pytest.approx(0.2)
    assert parity["mean_abs_top_prob_diff"] == pytest.approx((0.1 + 0.2 + 0.05) / 3)


def test_remedies_start_with_the_request_then_keep_ends_float() -> None:
    tries = remedies(QuantizeOptions(method="MinMax", per_channel=False))
    assert tries[0] == ("as requested", QuantizeOptions(method="MinMax", per_channel=False))
    assert all(opts.keep_ends_float for _, opts in tries[1:])
    assert tries[-1][1].method == "Percentile" and tries[-1][1].per_channel


def _colour_cnn(path: Path) -> Path:
    """A tiny fp32 CNN (Conv-Relu-GlobalAveragePool-Gemm) that calls red images "red" and blue
    ones "blue": real convolutions for onnxruntime to quantize, in milliseconds."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from gclf.export.onnx_export import set_metadata
    from gclf.runtime.metadata import ModelMetadata
    from gclf.runtime.preprocess import PreprocessSpec

    conv_w = np.zeros((2, 3, 3, 3), np.float32)
    conv_w[0, 0] = 1 / 9  # feature 0: red channel
    conv_w[1, 2] = 1 / 9  # feature 1: blue channel
    fc_w = np.array([[4.0, -4.0], [-4.0, 4.0]], np.float32)  # (classes, features)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "conv_w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
            helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
            helper.make_node("Gemm", ["f", "fc_w"], ["logits"], name="fc", transB=1),
        ],
        "colour_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(conv_w, "conv_w"), numpy_helper.from_array(fc_w, "fc_w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    set_metadata(model, ModelMetadata(spec=PreprocessSpec(input_height=32, input_width=32), class_names=("red", "blue"), training={"init": "hand-made"}))
    onnx.save_model(model, str(path))
    return path


def _colour_images(folder: Path, count: int, seed: int) -> list[list]:
    """[path, class] rows: noisy reddish or bluish images, alternating."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        label = ("red", "blue")[i % 2]
        img = rng.integers(0, 120, size=(32, 32, 3)).astype(np.uint8)  # BGR
        img[:, :, 2 if label == "red" else 0] += np.uint8(rng.integers(60, 130))
        path = folder / f"{label}_{i}.png"
        cv2.imwrite(str(path), img)
        rows.append([str(path), label])
    return rows


@pytest.fixture
def colour_run(tmp_path: Path) -> tuple[Path, RunFiles]:
    fp32 = _colour_cnn(tmp_path / "model.onnx")
    manifest = {"splits": {"train": _colour_images(tmp_path / "train", 16, 0), "val": [], "test": _colour_images(tmp_path / "test", 40, 1)}}
    return fp32, RunFiles(tmp_path / "best.pt", manifest, None)


def _black_images(folder: Path, count: int = 8) -> list[Path]:
    """A deliberately bad calibration set: activation ranges collapse to zero, so the int8
    model cannot tell real images apart."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"black_{i}.png"
        cv2.imwrite(str(path), np.zeros((32, 32, 3), np.uint8))
        paths.append(path)
    return paths


def test_good_calibration_passes_the_gate(colour_run, tmp_path: Path) -> None:
    fp32, run = colour_run
    dest = tmp_path / "out" / "model.int8.onnx"
    lines: list[str] = []
    quant = export_int8(fp32, run, dest, QuantizeOptions(), 16, lines.append)
    meta = Classifier(dest).metadata.quantization
    assert meta["gate"]["passed"] and not meta["gate"]["forced"] and meta["gate"]["remedy"] == "as requested"
    assert meta["top1_agreement"] >= 0.99 and meta["fp32_accuracy"] == 1.0
    assert meta["calibration_count"] == 16 and meta["calibration_per_class"] == {"red": 8, "blue": 8}
    assert quant.quantization["parity_split"] == "test" and quant.gate_passed and "disjoint" in lines[0]
    # saturation-safe by default (7-bit weights), and the gate says where it ran
    from gclf.runtime.cpu_class import detect_cpu_class

    assert meta["reduce_range"] and meta["saturation_safe"] and meta["parity_cpu_class"] == detect_cpu_class()
    assert "saturation-safe" in lines[-1]


def test_full_8bit_weights_are_recorded_as_not_saturation_safe(colour_run, tmp_path: Path) -> None:
    fp32, run = colour_run
    dest = tmp_path / "out" / "model.int8.onnx"
    export_int8(fp32, run, dest, QuantizeOptions(reduce_range=False), 16, lambda _: None)
    meta = Classifier(dest).metadata.quantization
    assert not meta["reduce_range"] and not meta["saturation_safe"]


def test_bad_calibration_fails_the_gate_and_writes_nothing(colour_run, tmp_path: Path) -> None:
    fp32, run = colour_run
    dest = tmp_path / "model.int8.onnx"
    dest.write_bytes(b"previous good file")
    lines: list[str] = []
    with pytest.raises(QualityGateError, match="not written"):
        export_int8(fp32, run, dest, QuantizeOptions(), 8, lines.append, calibration_override=_black_images(tmp_path / "calib"))
    assert dest.read_bytes() == b"previous good file"
    assert sum("fails the gate" in l for l in lines) == len(remedies(QuantizeOptions()))  # every remedy was tried
    assert list(tmp_path.glob(".model.int8.onnx*")) == []  # no temporary file left


def test_force_writes_the_best_attempt_and_records_the_failure(colour_run, tmp_path: Path) -> None:
    fp32, run = colour_run
    dest = tmp_path / "model.int8.onnx"
    export_int8(fp32, run, dest, QuantizeOptions(), 8, lambda _: None, force=True, calibration_override=_black_images(tmp_path / "calib"))
    meta = Classifier(dest).metadata.quantization
    assert meta["gate"]["forced"] and not meta["gate"]["passed"]
    assert meta["top1_agreement"] == max(a["top1_agreement"] for a in meta["gate"]["attempts"])
    assert len(meta["gate"]["attempts"]) == len(remedies(QuantizeOptions()))


# --- each file's own calibration and decision threshold, fitted on the validation split ---------


@pytest.fixture
def colour_run_with_val(tmp_path: Path) -> tuple[Path, RunFiles]:
    fp32 = _colour_cnn(tmp_path / "model.onnx")
    splits = {"train": _colour_images(tmp_path / "train", 16, 0), "val": _colour_images(tmp_path / "val", 30, 2), "test": _colour_images(tmp_path / "test", 40, 1)}
    return fp32, RunFiles(tmp_path / "best.pt", {"seed": 7, "splits": splits}, None)


def _val_files(run: RunFiles) -> list[tuple[Path, int]]:
    return [(Path(p), ("red", "blue").index(label)) for p, label in run.manifest["splits"]["val"]]


def test_each_file_records_a_temperature_fitted_on_its_own_validation_logits(colour_run_with_val, tmp_path: Path) -> None:
    from gclf.export.pipeline import calibrate_model, model_logits, record_reference_outputs
    from gclf.runtime.evaluation.calibration import fit_temperature
    from gclf.runtime.onnx_metadata import read_metadata as read_props

    fp32, run = colour_run_with_val
    record_reference_outputs(fp32, lambda _: None)  # as export_fp32 does before calibrating
    val = _val_files(run)
    labels = np.array([y for _, y in val])
    raw32 = model_logits(fp32, val)
    lines: list[str] = []
    fit32 = calibrate_model(fp32, run, "fp32", lines.append)
    dest = tmp_path / "out" / "model.int8.onnx"
    int8 = export_int8(fp32, run, dest, QuantizeOptions(), 16, lines.append)

    clf32, clf8 = Classifier(fp32), Classifier(dest)  # each loads: its parity check compares raw logits with raw references
    assert read_props(fp32)["gclf.format_version"] == read_props(dest)["gclf.format_version"] == "2"
    assert clf32.calibration == fit32.temperature and clf8.calibration == int8.confidence.temperature
    assert fit32.temperature.parameters["temperature"] == pytest.approx(fit_temperature(raw32, labels))
    raw8 = model_logits(dest, val)
    assert not np.allclose(raw8, raw32)  # int8 logits differ, so it fits its own
    assert int8.confidence.temperature.parameters["temperature"] == pytest.approx(fit_temperature(raw8, labels))
    source = clf8.calibration.fitted_on
    assert (source["data"], source["photos"], source["seed"]) == ("validation split", 30, 7)
    assert source["model"]["file"] == "model.int8.onnx" and clf32.calibration.fitted_on["model"]["file"] == "model.onnx"
    # Temperature and vector scaling are both fitted and logged with ECE and NLL; the decision
    # threshold is chosen on the calibrated answers and recorded.
    on_val = [line for line in lines if "validation photos: ECE" in line and "NLL" in line]
    assert sum("calibration, temperature" in line for line in on_val) == 2 and sum("calibration, vector scaling" in line for line in on_val) == 2
    for clf, fit in ((clf32, fit32), (clf8, int8.confidence)):
        assert clf.metadata.decision == fit.decision and fit.decision.photos == 30 and "95%" in fit.decision.rule
    # Both methods are also measured on the test split, which nothing was fitted on.
    from gclf.runtime.evaluation.calibration import nll

    test = [(Path(p), ("red", "blue").index(label)) for p, label in run.manifest["splits"]["test"]]
    raw_test = model_logits(fp32, test)
    t32 = fit32.temperature.parameters["temperature"]
    assert fit32.held_out["temperature"]["nll_after"] == pytest.approx(nll(raw_test / t32, [y for _, y in test]))
    assert fit32.held_out["temperature"]["nll_before"] == pytest.approx(nll(raw_test, [y for _, y in test]))
    assert set(int8.confidence.held_out) == {"temperature", "vector_scaling"}
    assert sum("on the 40 test photos (nothing fitted on them)" in line for line in lines) == 4
    x = load_batch([p for p, _ in val[:4]], clf8.spec)
    got = [p.confidence for p in clf8.predict_input(x)]
    assert got == pytest.approx(int8.confidence.temperature.apply(clf8.logits(x)).max(axis=1))


def test_without_calibrate_the_int8_file_records_none(colour_run_with_val, tmp_path: Path) -> None:
    from gclf.runtime.onnx_metadata import read_metadata as read_props

    fp32, run = colour_run_with_val
    dest = tmp_path / "model.int8.onnx"
    int8 = export_int8(fp32, run, dest, QuantizeOptions(), 16, lambda _: None, calibrate=False)
    props = read_props(dest)
    assert int8.confidence is None and "gclf.calibration" not in props and "gclf.decision" not in props
    assert props["gclf.format_version"] == "1" and Classifier(dest).calibration is None


def test_no_validation_split_means_no_calibration_said_in_one_line(colour_run, tmp_path: Path) -> None:
    from gclf.export.pipeline import calibrate_model

    fp32, run = colour_run  # its validation split is empty
    lines: list[str] = []
    assert calibrate_model(fp32, run, "fp32", lines.append) is None
    assert lines == ["warning: the run has no validation split: model.onnx records no calibration (its answers are the raw softmax)"]
