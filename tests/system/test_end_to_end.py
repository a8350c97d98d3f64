"""gclf-train -> gclf-export --quantize -> gclf-infer on a tiny generated set (one shared run).

The run (conftest `tiny_run`) trains one epoch at 64x64 from random initialisation, so
accuracy means nothing here; these tests check the artefacts and their consistency.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import gclf.export.pipeline
from gclf.export.cli import main as export_main
from gclf.runtime.classifier import Classifier
from gclf.runtime.cli.infer import main as infer_main
from gclf.runtime.decode import decode_image
from gclf.runtime.errors import EXIT_EXPORT_CHECK
from gclf.runtime.files import sha256_file
from gclf.runtime.listing import list_images
from gclf.runtime.preprocess import PreprocessSpec, preprocess_batch
from gclf.train.checkpoint import load_gclf_checkpoint
from gclf.train.model import model_from_checkpoint

pytestmark = pytest.mark.slow

CLASSES = ("circles", "squares")


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_run_folder_and_exported_files_exist(tiny_run) -> None:
    for name in ("manifest.json", "config.json", "history.csv", "best.pt", "last.pt", "metrics.json", "model.onnx", "model.int8.onnx"):
        assert (tiny_run.run_dir / name).is_file(), name
    assert not [p for p in tiny_run.run_dir.iterdir() if p.name.startswith(".")]  # no temporary files left
    with open(tiny_run.run_dir / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1]
    assert "run folder:" in tiny_run.train_output and "test split: accuracy" in tiny_run.train_output


def test_manifest_lists_disjoint_train_val_test_files(tiny_run) -> None:
    manifest = _json(tiny_run.run_dir / "manifest.json")

    splits = {name: {path for path, _ in manifest["splits"][name]} for name in ("train", "val", "test")}
    assert all(splits.values())
    assert not splits["train"] & splits["val"] and not splits["train"] & splits["test"] and not splits["val"] & splits["test"]
    assert set().union(*splits.values()) == {str(p) for p in list_images(tiny_run.data)}
    for name in splits:
        for path, label in manifest["splits"][name]:
            assert Path(path).parent.name == label
    assert manifest["class_names"] == list(CLASSES)
    assert manifest["seed"] == 0 and manifest["fractions"] == {"train": 0.8, "val": 0.1, "test": 0.1}
    assert manifest["counts"]["train"] == {c: 8 for c in CLASSES}  # 80 % of 10 per class
    assert manifest["skipped"] == []


def test_metrics_report_the_test_split(tiny_run) -> None:
    metrics = _json(tiny_run.run_dir / "metrics.json")
    manifest = _json(tiny_run.run_dir / "manifest.json")
    test = metrics["test"]

    n_test = len(manifest["splits"]["test"])
    assert metrics["split_counts"]["test"] == n_test == test["n"]
    matrix = np.array(test["confusion_matrix"]["rows_true_cols_predicted"])
    assert test["confusion_matrix"]["labels"] == list(CLASSES)
    assert matrix.shape == (2, 2) and matrix.sum() == n_test
    assert test["accuracy"] == pytest.approx(np.trace(matrix) / n_test)
    for i, name in enumerate(CLASSES):
        per_class = test["per_class"][name]
        assert per_class["support"] == matrix[i].sum() == sum(1 for _, label in manifest["splits"]["test"] if label == name)
        assert per_class["recall"] == pytest.approx(matrix[i, i] / matrix[i].sum())
        assert 0.0 <= per_class["precision"] <= 1.0
    assert metrics["best_epoch"] == 1 and metrics["epochs_run"] == 1
    assert metrics["init"]["kind"] == "random"


def test_fp32_model_describes_itself(tiny_run) -> None:
    meta = Classifier(tiny_run.fp32).metadata

    assert meta.variant == "fp32" and meta.quantization is None
    assert meta.class_names == CLASSES
    assert meta.spec == PreprocessSpec(input_height=tiny_run.image_size, input_width=tiny_run.image_size)
    assert meta.training["epoch"] == 1 and meta.training["max_epochs"] == 1
    assert meta.training["test_accuracy"] == _json(tiny_run.run_dir / "metrics.json")["test"]["accuracy"]


def test_int8_model_records_its_quantization(tiny_run) -> None:
    fp32 = Classifier(tiny_run.fp32).metadata
    meta = Classifier(tiny_run.int8).metadata
    n_test = len(_json(tiny_run.run_dir / "manifest.json")["splits"]["test"])

    assert meta.variant == "int8"
    assert meta.spec == fp32.spec and meta.class_names == fp32.class_names and meta.training == fp32.training
    q = meta.quantization
    assert q is not None
    assert q["parent_file"] == "model.onnx"
    assert q["parent_sha256"] == sha256_file(tiny_run.fp32)
    assert q["calibration_count"] == tiny_run.calibration_size
    assert q["calibration_per_class"] == {c: tiny_run.calibration_size // 2 for c in CLASSES}
    assert q["test_count"] == n_test
    assert q["gate"]["passed"] != q["gate"]["forced"] and q["gate"]["attempts"]
    assert {"max_abs_top_prob_diff", "mean_abs_top_prob_diff"} <= q.keys()
    for key in ("top1_agreement", "fp32_accuracy", "int8_accuracy"):
        assert 0.0 <= q[key] <= 1.0, key
        assert q[key] * n_test == pytest.approx(round(q[key] * n_test))  # a share of the test images
    assert "wrote" in tiny_run.export_output and "model.int8.onnx" in tiny_run.export_output


def test_each_exported_file_records_a_calibration_fitted_on_the_validation_split(tiny_run, tmp_path: Path) -> None:
    n_val = len(_json(tiny_run.run_dir / "manifest.json")["splits"]["val"])
    for path, variant in ((tiny_run.fp32, "fp32"), (tiny_run.int8, "int8")):
        meta = Classifier(path).metadata
        assert meta.calibration is not None and meta.calibration.method == "temperature", tiny_run.export_output
        assert (meta.calibration.fitted_on["data"], meta.calibration.fitted_on["photos"]) == ("validation split", n_val)
        assert meta.calibration.fitted_on["model"]["file"] == path.name
        assert meta.decision is not None and meta.decision.photos == n_val
        assert f"{variant} calibration, temperature" in tiny_run.export_output and f"{variant} calibration, vector scaling" in tiny_run.export_output
        # (each file fitting on its own logits: tests/export/test_quant_gate.py)
    assert "fitted on only" in tiny_run.export_output  # a toy's validation split is a handful of photos, and the log says so
    from click.testing import CliRunner

    from gclf.export.cli import main as export_main

    raw = CliRunner().invoke(export_main, [str(tiny_run.run_dir), "--out", str(tmp_path), "--no-calibrate"])
    assert raw.exit_code == 0, raw.output
    assert Classifier(tmp_path / "model.onnx").metadata.calibration is None and "raw softmax" in raw.output


def _some_inputs(tiny_run, count: int) -> np.ndarray:
    paths = sorted(list_images(tiny_run.data))[:: max(1, (2 * tiny_run.per_class) // count)][:count]
    spec = PreprocessSpec(input_height=tiny_run.image_size, input_width=tiny_run.image_size)
    return preprocess_batch([decode_image(p) for p in paths], spec)


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_exported_models_have_a_dynamic_batch_axis(tiny_run, variant: str) -> None:
    clf = Classifier(tiny_run.fp32 if variant == "fp32" else tiny_run.int8)
    batch = _some_inputs(tiny_run, 3)

    three = clf.logits(batch)
    ones = np.concatenate([clf.logits(batch[i : i + 1]) for i in range(3)])

    assert three.shape == (3, 2) and ones.shape == (3, 2)
    assert np.allclose(three, ones, atol=1e-4)


def test_fp32_onnx_computes_what_the_checkpoint_computes(tiny_run) -> None:
    model = model_from_checkpoint(load_gclf_checkpoint(tiny_run.run_dir / "best.pt"))
    batch = _some_inputs(tiny_run, 5)

    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    got = Classifier(tiny_run.fp32).logits(batch)

    assert np.abs(expected - got).max() <= 1e-4


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_gclf_infer_runs_the_exported_models(tiny_run, variant: str) -> None:
    model = tiny_run.fp32 if variant == "fp32" else tiny_run.int8

    result = CliRunner().invoke(infer_main, ["--json", str(model), str(tiny_run.data)])

    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["path"] for r in records) == sorted(str(p) for p in list_images(tiny_run.data))
    # A class, or unsure below the threshold the export recorded (then "best" names the class).
    assert all(r.get("best", r["label"]) in CLASSES and r["label"] in (*CLASSES, "unsure") for r in records)
    assert all(set(r["probabilities"]) == set(CLASSES) for r in records)
    assert f"({variant} model {model.name} on onnxruntime " in result.stderr  # the summary names the engine


def test_a_failed_export_leaves_the_existing_model_byte_identical(tiny_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "export"
    out.mkdir()
    existing = out / "model.onnx"
    shutil.copyfile(tiny_run.fp32, existing)
    before = existing.read_bytes()
    # The parity check reports a large torch-vs-onnxruntime difference.
    monkeypatch.setattr(gclf.export.pipeline, "max_logit_difference", lambda *args, **kwargs: 0.5)

    result = CliRunner().invoke(export_main, [str(tiny_run.run_dir), "--out", str(out)])

    assert result.exit_code == EXIT_EXPORT_CHECK
    assert "disagrees with PyTorch" in result.stderr and "nothing was written" in result.stderr
    assert "Traceback" not in result.output
    assert existing.read_bytes() == before
    assert [p.name for p in out.iterdir()] == ["model.onnx"]  # no temporary file left behind
